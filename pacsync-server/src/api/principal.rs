//! Who is calling: the bearer token checked against the database on every
//! request, so a deleted user, a changed role, a user's ended session or a
//! revoked machine session takes effect at once.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, ApiResult, AppState};
use crate::auth::{Principal, Role};
use crate::store::{api_tokens, endpoints, sessions};

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        // A bearer token wins; else the web UI's session cookie, which
        // must come with its CSRF token on requests that change things.
        let token = match bearer(&parts.headers) {
            Some(t) => t,
            None => crate::web::session::token_from_cookie(parts)?
                .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?,
        };
        authenticate(app, token).await.map(|(p, _)| p)
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

/// Who `token` belongs to, and until when (Unix seconds) it is valid.
/// Remembered briefly ([`super::cache::PrincipalCache`]): this replica
/// forgets every owner when a credential changes through it, and learns of
/// other replicas' changes through their notifications.
pub async fn authenticate(app: &AppState, token: String) -> ApiResult<(Principal, i64)> {
    let cache = &app.caches.principals;
    if let Some(known) = cache.get(&token, crate::store::now_ms() / 1000) {
        return Ok(known);
    }
    let generation = cache.generation();
    let (principal, until) = look_up(app, token.clone()).await?;
    cache.insert(&token, generation, principal.clone(), until);
    Ok((principal, until))
}

/// [`authenticate`] from the database.
async fn look_up(app: &AppState, token: String) -> ApiResult<(Principal, i64)> {
    if token.starts_with(api_tokens::PREFIX) {
        let row = app
            .store
            .run(move |conn| api_tokens::authenticate(conn, &token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("API token unknown, expired or revoked"))?;
        let role =
            Role::parse(&row.role).ok_or_else(|| ApiError::internal("stored role unknown"))?;
        // A token without expiry is good for sessions of up to a year.
        let exp = row
            .expires_at
            .map_or(crate::store::now_ms() / 1000 + 366 * 24 * 3600, |e| {
                e / 1000
            });
        return Ok((
            Principal::Token {
                id: row.id,
                name: row.name,
                role,
            },
            exp,
        ));
    }
    let claims = app
        .keys
        .verify(&token)
        .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
    let exp = claims.exp;
    let principal = app
        .store
        .run(move |conn| {
            Ok(match claims.kind.as_str() {
                "user" => match &claims.sid {
                    Some(sid) => sessions::user(conn, sid, &claims.sub)?,
                    None => None,
                }
                .and_then(|u| {
                    Role::parse(&u.role).map(|role| Principal::User {
                        id: u.id,
                        name: u.name,
                        role,
                    })
                }),
                "machine" => match endpoints::get(conn, &claims.sub) {
                    Ok(ep) if Some(ep.session_gen) == claims.generation => {
                        Some(Principal::Machine { endpoint_id: ep.id })
                    }
                    Ok(_) | Err(crate::store::StoreError::NotFound(_)) => None,
                    Err(e) => return Err(e),
                },
                _ => None,
            })
        })
        .await?;
    principal
        .map(|p| (p, exp))
        .ok_or_else(|| ApiError::unauthorized("token no longer valid"))
}

impl Principal {
    /// A user with at least `role`; machines never qualify.
    pub fn require(&self, role: Role) -> ApiResult<()> {
        match self {
            Principal::User { role: have, .. } | Principal::Token { role: have, .. }
                if *have >= role =>
            {
                Ok(())
            }
            Principal::User { .. } | Principal::Token { .. } => {
                Err(ApiError::forbidden(format!("needs the {role} role")))
            }
            Principal::Machine { .. } => Err(ApiError::forbidden("machines may not do this")),
        }
    }

    /// The machine itself, or a user with at least `role`.
    pub fn require_endpoint(&self, endpoint_id: &str, role: Role) -> ApiResult<()> {
        match self {
            Principal::Machine { endpoint_id: own } if own == endpoint_id => Ok(()),
            Principal::Machine { .. } => {
                Err(ApiError::forbidden("a machine may act only on itself"))
            }
            Principal::User { .. } | Principal::Token { .. } => self.require(role),
        }
    }

    /// Only the machine itself (state reports, operation progress).
    pub fn require_machine(&self, endpoint_id: &str) -> ApiResult<()> {
        match self {
            Principal::Machine { endpoint_id: own } if own == endpoint_id => Ok(()),
            Principal::Machine { .. } => {
                Err(ApiError::forbidden("a machine may act only on itself"))
            }
            Principal::User { .. } | Principal::Token { .. } => {
                Err(ApiError::forbidden("only the machine itself may do this"))
            }
        }
    }
}
