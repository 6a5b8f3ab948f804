//! Browser sessions: the admin UI logs in with a user's password and gets
//! the user's access token in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` over TLS), which JavaScript never sees. Requests that change
//! something must also carry `X-CSRF-Token`, a value derived from the
//! session token: another site can neither read it nor make a browser
//! send the header.

use axum::Extension;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, ApiResult, AppState, Json};
use crate::auth::{Principal, USER_TOKEN_SECS};

pub const COOKIE_NAME: &str = "pacsync_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether the connection a request came on is TLS, set per connection by
/// the server; a reverse proxy terminating TLS says so with
/// `X-Forwarded-Proto: https`.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    pub tls: bool,
}

/// The session token of the request's cookie, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The CSRF token that goes with a session token.
pub fn csrf_for(session: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"pacsync-csrf\0");
    h.update(session.as_bytes());
    hex::encode(h.finalize())
}

/// Whether a request with this method may change something.
fn changes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session token of a cookie-authenticated request, refused when it
/// changes something without the matching CSRF header.
pub fn token_from_cookie(parts: &Parts) -> ApiResult<Option<String>> {
    let Some(token) = cookie_token(&parts.headers) else {
        return Ok(None);
    };
    if changes(&parts.method) {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !constant_time_eq(sent.as_bytes(), csrf_for(&token).as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "missing or wrong X-CSRF-Token for a cookie session",
            ));
        }
    }
    Ok(Some(token))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn secure(headers: &HeaderMap, transport: Option<Extension<Transport>>) -> bool {
    transport.is_some_and(|Extension(t)| t.tls)
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let s = format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// What the page needs to know about its session.
fn session_json(who: &Principal, csrf: &str) -> Value {
    match who {
        Principal::User { id, name, role } | Principal::Token { id, name, role } => {
            json!({ "user": { "id": id, "name": name, "role": role }, "csrf": csrf })
        }
        Principal::Machine { endpoint_id } => {
            json!({ "machine": endpoint_id, "csrf": csrf })
        }
    }
}

/// `POST /ui/login` `{"username","password"}`: the password is checked as
/// by `POST /api/auth/login`; the token goes into the cookie only.
pub async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    transport: Option<Extension<Transport>>,
    Json(body): Json<crate::api::auth::Login>,
) -> ApiResult<Response> {
    let Json(answer) = crate::api::auth::login(State(app.clone()), Json(body)).await?;
    let token = answer["access_token"]
        .as_str()
        .ok_or_else(|| ApiError::internal("login answered without a token"))?
        .to_owned();
    let (who, _) = crate::api::principal::authenticate(&app, token.clone()).await?;
    let mut resp = Json(session_json(&who, &csrf_for(&token))).into_response();
    let h = resp.headers_mut();
    h.insert(
        SET_COOKIE,
        set_cookie(&token, USER_TOKEN_SECS, secure(&headers, transport)),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /ui/logout`: ends the session on the server, so the cookie's
/// token is refused from now on even where a copy of it survives, and
/// clears the cookie (CSRF-checked, so another site cannot log the admin
/// out).
pub async fn logout(
    State(app): State<AppState>,
    headers: HeaderMap,
    transport: Option<Extension<Transport>>,
    _who: Principal,
) -> ApiResult<Response> {
    if let Some(token) = cookie_token(&headers) {
        crate::api::auth::end_session(&app, &token).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, set_cookie("", 0, secure(&headers, transport)));
    Ok(resp)
}

/// `GET /ui/session`: who is logged in and the CSRF token to send; 401
/// without a session.
pub async fn current(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let token = cookie_token(&headers).ok_or_else(|| ApiError::unauthorized("no session"))?;
    let (who, _) = crate::api::principal::authenticate(&app, token.clone()).await?;
    if matches!(who, Principal::Machine { .. }) {
        return Err(ApiError::forbidden("machines have no web session"));
    }
    let mut resp = Json(session_json(&who, &csrf_for(&token))).into_response();
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; pacsync_session=tok; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("tok"));
        h.insert(COOKIE, HeaderValue::from_static("pacsync_session="));
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert!(constant_time_eq(
            csrf_for("a").as_bytes(),
            csrf_for("a").as_bytes()
        ));
        assert!(!constant_time_eq(b"ab", b"a"));
    }

    #[test]
    fn cookies_are_secure_over_tls_or_behind_a_tls_proxy() {
        let c = set_cookie("t", 10, true);
        let s = c.to_str().expect("ascii");
        assert!(s.contains("HttpOnly") && s.contains("SameSite=Strict") && s.ends_with("Secure"));
        let mut h = HeaderMap::new();
        assert!(!secure(&h, Some(Extension(Transport { tls: false }))));
        assert!(secure(&h, Some(Extension(Transport { tls: true }))));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(secure(&h, None));
    }
}
