//! Logging in, machine enrollment and token refresh; users, enrollment
//! tokens and the audit log (admin only).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::endpoints::endpoint_json;
use super::{
    ApiError, ApiResult, AppState, Json, PageQuery, Path, Query, check_id, check_name, opt_time,
    page_json, rfc3339,
};
use crate::auth::{self, Principal, Role};
use crate::store::changes::Touched;
use crate::store::credentials::{self, Refreshed};
use crate::store::models::{ApiTokenRow, EnrollmentTokenRow, UserRow};
use crate::store::{api_tokens, audit, endpoints, now_ms, sessions};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

pub async fn login(State(app): State<AppState>, Json(body): Json<Login>) -> ApiResult<Json<Value>> {
    let name = body.username.clone();
    let user = app
        .store
        .run(move |conn| credentials::user_by_name(conn, &name))
        .await?;
    // Verify against a fixed hash when the user does not exist, so the
    // answer takes as long either way.
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => DUMMY_HASH.clone(),
    };
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(ApiError::unauthorized("wrong username or password")),
    };
    let role = Role::parse(&user.role).ok_or_else(|| ApiError::internal("stored role unknown"))?;
    let user_id = user.id.clone();
    // A new session changes no existing token's owner, so the caches of
    // who a token is stay.
    let session = app
        .store
        .write_touching(move |conn| {
            sessions::prune(conn, now_ms())?;
            let id = sessions::create(conn, &user_id, auth::USER_TOKEN_SECS)?;
            Ok((id, Touched::Nothing))
        })
        .await?;
    let token = app
        .keys
        .issue_user(&user.id, role, &session, now_ms() / 1000)?;
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": auth::USER_TOKEN_SECS,
        "user": { "id": user.id, "name": user.name, "role": role },
    })))
}

/// `POST /api/auth/logout`: ends the caller's session; its token (bearer
/// or cookie) stops working at once.
pub async fn logout(
    State(app): State<AppState>,
    headers: HeaderMap,
    who: Principal,
) -> ApiResult<StatusCode> {
    if !matches!(who, Principal::User { .. }) {
        return Err(ApiError::forbidden(
            "only a user's session logs out; API tokens are revoked instead",
        ));
    }
    let token = super::principal::bearer(&headers)
        .or_else(|| crate::web::session::cookie_token(&headers))
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    end_session(&app, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the session a user token belongs to (nothing for other tokens).
pub async fn end_session(app: &AppState, token: &str) -> ApiResult<()> {
    let Some(sid) = app
        .keys
        .verify(token)
        .filter(|c| c.kind == "user")
        .and_then(|c| c.sid)
    else {
        return Ok(());
    };
    app.store
        .write(move |conn| sessions::end(conn, &sid))
        .await?;
    Ok(())
}

/// argon2 hash of a random password nobody knows.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::random_hex(16)
        .and_then(|p| auth::hash_password(&p))
        .unwrap_or_default()
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    enrollment_token: String,
    name: String,
}

pub async fn register(
    State(app): State<AppState>,
    Json(body): Json<Register>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = check_name("name", &body.name)?;
    let token = body.enrollment_token;
    let reg = app
        .store
        .write(move |conn| endpoints::register(conn, &token, &name))
        .await
        .map_err(|e| match ApiError::from(e) {
            e if e.code == "invalid_enrollment_token" => {
                ApiError::new(StatusCode::UNAUTHORIZED, e.code, e.message)
            }
            e => e,
        })?;
    let access =
        app.keys
            .issue_machine(&reg.endpoint.id, reg.endpoint.session_gen, now_ms() / 1000)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "endpoint": endpoint_json(&reg.endpoint, reg.pool_name.as_deref()),
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": auth::MACHINE_TOKEN_SECS,
            "refresh_token": reg.refresh_token,
        })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    refresh_token: String,
}

pub async fn refresh(
    State(app): State<AppState>,
    Json(body): Json<Refresh>,
) -> ApiResult<Json<Value>> {
    let token = body.refresh_token;
    let outcome = app
        .store
        .write(move |conn| credentials::rotate_refresh(conn, &token))
        .await?;
    match outcome {
        Refreshed::Rotated {
            endpoint_id,
            generation,
            refresh_token,
        } => {
            let access = app
                .keys
                .issue_machine(&endpoint_id, generation, now_ms() / 1000)?;
            Ok(Json(json!({
                "endpoint_id": endpoint_id,
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": auth::MACHINE_TOKEN_SECS,
                "refresh_token": refresh_token,
            })))
        }
        Refreshed::Invalid => Err(ApiError::unauthorized(
            "refresh token unknown, expired or revoked",
        )),
        Refreshed::Reused => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "refresh_token_reused",
            "this refresh token was already used; the machine's session is revoked and it must enroll again",
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    name: String,
    password: String,
    role: Role,
}

pub async fn create_user(
    State(app): State<AppState>,
    who: Principal,
    Json(body): Json<CreateUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(Role::Admin)?;
    let name = check_name("name", &body.name)?;
    check_password(&body.password)?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&body.password))
        .await
        .map_err(ApiError::internal)??;
    let actor = who.actor();
    let role = body.role;
    let user = app
        .store
        .write(move |conn| credentials::create_user(conn, &name, &hash, role, &actor))
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))))
}

fn check_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < 8 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "password must be at least 8 characters",
        )
        .with_details(json!({ "field": "password" })));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    role: Option<Role>,
    /// A new password; ends every session of the user.
    password: Option<String>,
}

/// `PATCH /api/users/{id}`: a new role and/or a new password (admins).
pub async fn update_user(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<UpdateUser>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    check_id("user", &id)?;
    if body.role.is_none() && body.password.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "give a role, a password or both",
        ));
    }
    let hash = match body.password {
        Some(p) => {
            check_password(&p)?;
            Some(
                tokio::task::spawn_blocking(move || auth::hash_password(&p))
                    .await
                    .map_err(ApiError::internal)??,
            )
        }
        None => None,
    };
    let actor = who.actor();
    let user = app
        .store
        .write(move |conn| credentials::update_user(conn, &id, body.role, hash.as_deref(), &actor))
        .await?;
    Ok(Json(user_json(&user)))
}

/// `DELETE /api/users/{id}` (admins): the user and their sessions go.
pub async fn delete_user(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::Admin)?;
    check_id("user", &id)?;
    let actor = who.actor();
    app.store
        .write(move |conn| credentials::delete_user(conn, &id, &actor))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_json(u: &UserRow) -> Value {
    json!({ "id": u.id, "name": u.name, "role": u.role, "created_at": rfc3339(u.created_at) })
}

pub async fn list_users(State(app): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    let users = app.store.run(credentials::list_users).await?;
    let items: Vec<Value> = users.iter().map(user_json).collect();
    let n = i64::try_from(items.len()).unwrap_or(i64::MAX);
    Ok(Json(page_json(items, 1, n.max(1), n)))
}

fn enrollment_json(t: &EnrollmentTokenRow) -> Value {
    json!({
        "id": t.id,
        "pool_id": t.pool_id,
        "created_by": t.created_by,
        "created_at": rfc3339(t.created_at),
        "expires_at": rfc3339(t.expires_at),
        "revoked_at": opt_time(t.revoked_at),
        "uses": t.uses,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollment {
    /// Pool id or name the enrolled machines join.
    pool: Option<String>,
    /// Lifetime in seconds (default 24 hours, at most a year).
    expires_in: Option<i64>,
}

pub async fn create_enrollment(
    State(app): State<AppState>,
    who: Principal,
    Json(body): Json<CreateEnrollment>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(Role::Admin)?;
    let ttl = body.expires_in.unwrap_or(24 * 3600);
    if !(60..=366 * 24 * 3600).contains(&ttl) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "expires_in must be between 60 seconds and a year",
        ));
    }
    let actor = who.actor();
    let (row, token) = app
        .store
        .write(move |conn| credentials::create_enrollment(conn, body.pool.as_deref(), ttl, &actor))
        .await?;
    let mut out = enrollment_json(&row);
    out["token"] = Value::String(token);
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn list_enrollments(
    State(app): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    let rows = app.store.run(credentials::list_enrollments).await?;
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    Ok(Json(page_json(
        rows.iter().map(enrollment_json).collect(),
        1,
        n.max(1),
        n,
    )))
}

pub async fn revoke_enrollment(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::Admin)?;
    check_id("enrollment token", &id)?;
    let actor = who.actor();
    app.store
        .write(move |conn| credentials::revoke_enrollment(conn, &id, &actor))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn audit(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    let (page, per_page, offset) = q.offset_limit()?;
    let (rows, total) = app
        .store
        .run(move |conn| audit::list(conn, offset, per_page))
        .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "at": rfc3339(r.at),
                "actor": r.actor,
                "action": r.action,
                "subject": r.subject,
                "details": serde_json::from_str::<Value>(&r.details).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(page_json(items, page, per_page, total)))
}

fn api_token_json(t: &ApiTokenRow) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "created_by": t.created_by,
        "created_at": rfc3339(t.created_at),
        "expires_at": opt_time(t.expires_at),
        "revoked_at": opt_time(t.revoked_at),
        "last_used_at": opt_time(t.last_used_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    name: String,
    role: Role,
    /// Lifetime in seconds; absent: until revoked.
    expires_in: Option<i64>,
}

pub async fn create_api_token(
    State(app): State<AppState>,
    who: Principal,
    Json(body): Json<CreateApiToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(Role::Admin)?;
    let name = check_name("name", &body.name)?;
    if body
        .expires_in
        .is_some_and(|t| !(60..=10 * 366 * 24 * 3600).contains(&t))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "expires_in must be between 60 seconds and ten years",
        ));
    }
    let actor = who.actor();
    let (row, token) = app
        .store
        .write(move |conn| api_tokens::create(conn, &name, body.role, body.expires_in, &actor))
        .await?;
    let mut out = api_token_json(&row);
    out["token"] = Value::String(token);
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn list_api_tokens(
    State(app): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    let rows = app.store.run(api_tokens::list).await?;
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    Ok(Json(page_json(
        rows.iter().map(api_token_json).collect(),
        1,
        n.max(1),
        n,
    )))
}

pub async fn revoke_api_token(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::Admin)?;
    check_id("API token", &id)?;
    let actor = who.actor();
    app.store
        .write(move |conn| api_tokens::revoke(conn, &id, &actor))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
