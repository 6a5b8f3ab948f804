//! The JSON API: routes, shared state, and what every handler uses
//! (who is calling, pagination, time format).

pub mod auth;
pub mod cache;
pub mod endpoints;
pub mod error;
pub mod operations;
pub mod pools;
pub mod principal;
pub mod repos;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::auth::Keys;
use crate::metrics::{self, Metrics};
use crate::ratelimit::RateLimiter;
use crate::store::Store;
pub use error::{ApiError, ApiResult, Json, Path, Query};

/// Body limit of state reports: a state of several thousand packages with
/// dependencies is a few MiB of JSON.
pub const STATE_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Body limit of every other request.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub keys: Arc<Keys>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<RateLimiter>,
    /// `ENABLE_REPOSITORY_ANALYSIS`: analysis exclusions join pool policies.
    pub analysis: bool,
    /// The workers that take full state reports.
    pub uploads: crate::uploads::Uploads,
    /// List pages and token owners, kept while nothing they show changed.
    pub caches: Arc<cache::ReadCaches>,
    /// The package archive (docs/archive.md).
    pub archive: crate::archive::Archive,
    /// Turns true when the server shuts down; WebSocket sessions close.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Held by every clone, so the server knows when the last connection
    /// and session are gone; never sent on.
    pub alive: tokio::sync::mpsc::Sender<()>,
}

/// Every route: path, method, handler. The router is built from this
/// table and a test holds it against `openapi.json`, so neither can gain a
/// route the other lacks.
pub fn routes() -> Vec<(&'static str, Method, MethodRouter<AppState>)> {
    use crate::archive::api as archive;
    use endpoints as e;
    use operations as o;
    use pools as p;
    vec![
        ("/health/live", Method::GET, get(live)),
        ("/health/ready", Method::GET, get(ready)),
        ("/metrics", Method::GET, get(metrics::render)),
        ("/api/openapi.json", Method::GET, get(openapi)),
        ("/api/ws", Method::GET, get(ws::connect)),
        ("/api/auth/login", Method::POST, post(auth::login)),
        ("/api/auth/refresh", Method::POST, post(auth::refresh)),
        ("/api/users", Method::GET, get(auth::list_users)),
        ("/api/auth/logout", Method::POST, post(auth::logout)),
        ("/api/users", Method::POST, post(auth::create_user)),
        ("/api/users/{id}", Method::PATCH, patch(auth::update_user)),
        ("/api/users/{id}", Method::DELETE, delete(auth::delete_user)),
        (
            "/api/enrollment-tokens",
            Method::GET,
            get(auth::list_enrollments),
        ),
        (
            "/api/enrollment-tokens",
            Method::POST,
            post(auth::create_enrollment),
        ),
        (
            "/api/enrollment-tokens/{id}",
            Method::DELETE,
            delete(auth::revoke_enrollment),
        ),
        ("/api/audit", Method::GET, get(auth::audit)),
        ("/api/api-tokens", Method::GET, get(auth::list_api_tokens)),
        (
            "/api/api-tokens",
            Method::POST,
            post(auth::create_api_token),
        ),
        (
            "/api/api-tokens/{id}",
            Method::DELETE,
            delete(auth::revoke_api_token),
        ),
        ("/api/pools", Method::GET, get(p::list)),
        ("/api/pools", Method::POST, post(p::create)),
        ("/api/pools/{id}", Method::GET, get(p::get)),
        ("/api/pools/{id}", Method::PATCH, patch(p::update)),
        ("/api/pools/{id}", Method::DELETE, delete(p::delete)),
        ("/api/pools/{id}/targets", Method::GET, get(p::targets)),
        (
            "/api/pools/{id}/targets/{target_id}",
            Method::GET,
            get(p::target),
        ),
        ("/api/pools/{id}/rollback", Method::POST, post(p::rollback)),
        (
            "/api/pools/{id}/operations",
            Method::GET,
            get(o::list_for_pool),
        ),
        ("/api/endpoints", Method::GET, get(e::list)),
        (
            "/api/endpoints/register",
            Method::POST,
            post(auth::register),
        ),
        ("/api/endpoints/{id}", Method::GET, get(e::get)),
        ("/api/endpoints/{id}", Method::PATCH, patch(e::update)),
        ("/api/endpoints/{id}", Method::DELETE, delete(e::delete)),
        (
            "/api/endpoints/{id}/state",
            Method::PUT,
            put(e::report_state).layer(DefaultBodyLimit::max(STATE_BODY_LIMIT)),
        ),
        (
            "/api/endpoints/{id}/state",
            Method::GET,
            get(e::current_state),
        ),
        (
            "/api/endpoints/{id}/states",
            Method::GET,
            get(e::state_history),
        ),
        ("/api/endpoints/{id}/plan", Method::GET, get(e::plan)),
        ("/api/endpoints/{id}/target", Method::GET, get(e::target)),
        (
            "/api/endpoints/{id}/set-latest",
            Method::POST,
            post(o::set_latest),
        ),
        ("/api/endpoints/{id}/sync", Method::POST, post(o::sync)),
        ("/api/endpoints/{id}/revert", Method::POST, post(o::revert)),
        (
            "/api/endpoints/{id}/operations",
            Method::GET,
            get(o::list_for_endpoint),
        ),
        ("/api/operations/{id}", Method::GET, get(o::get)),
        ("/api/operations/{id}/cancel", Method::POST, post(o::cancel)),
        (
            "/api/operations/{id}/progress",
            Method::POST,
            post(o::progress),
        ),
        (
            "/api/repositories",
            Method::PUT,
            put(repos::report).layer(DefaultBodyLimit::max(STATE_BODY_LIMIT)),
        ),
        ("/api/repositories", Method::GET, get(repos::list)),
        ("/api/archive", Method::GET, get(archive::status)),
        ("/api/archive/verify", Method::POST, post(archive::verify)),
        ("/api/archive/gc", Method::POST, post(archive::gc)),
        ("/api/archive/fill", Method::POST, post(archive::fill)),
        (
            "/api/archive/lookup",
            Method::POST,
            post(archive::lookup).layer(DefaultBodyLimit::max(STATE_BODY_LIMIT)),
        ),
        (
            "/api/archive/files/{sha256}",
            Method::GET,
            get(archive::file),
        ),
        (
            "/api/archive/packages",
            Method::PUT,
            put(archive::upload).layer(DefaultBodyLimit::disable()),
        ),
        (
            "/api/archive/packages/{sha256}/signature",
            Method::PUT,
            put(archive::upload_signature),
        ),
        (
            "/api/endpoints/{id}/archive",
            Method::GET,
            get(archive::endpoint_files),
        ),
        (
            "/repo/{pool}/{target}/{repo}/os/{arch}/{file}",
            Method::GET,
            get(archive::repo_file),
        ),
        (
            "/api/repositories/analyze",
            Method::GET,
            get(repos::analyze),
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    // One MethodRouter per path, merged from the table's rows.
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for (path, _, handler) in routes() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((path, handler)),
        }
    }
    let mut router = Router::new();
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    router
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::ratelimit::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// The machine-readable description of every route (OpenAPI 3.1).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(app): State<AppState>) -> Response {
    let check = app
        .store
        .run(|conn| {
            use diesel::connection::SimpleConnection as _;
            conn.batch_execute("SELECT 1")
                .map_err(crate::store::StoreError::from)
        })
        .await;
    match check {
        Ok(()) => {
            Json(json!({ "status": "ok", "database": app.store.kind().as_str() })).into_response()
        }
        Err(e) => {
            tracing::warn!("readiness check failed: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database unreachable",
            )
            .into_response()
        }
    }
}

/// `?page=1&per_page=50` as offset and limit.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

pub const MAX_PER_PAGE: i64 = 500;

impl PageQuery {
    pub fn resolve(page: Option<i64>, per_page: Option<i64>) -> ApiResult<(i64, i64, i64)> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(50);
        if page < 1 || !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("page must be >= 1 and per_page within 1..={MAX_PER_PAGE}"),
            ));
        }
        let offset = (page - 1)
            .checked_mul(per_page)
            .ok_or_else(|| ApiError::bad_request("invalid_query", "page out of range"))?;
        Ok((page, per_page, offset))
    }

    pub fn offset_limit(self) -> ApiResult<(i64, i64, i64)> {
        PageQuery::resolve(self.page, self.per_page)
    }
}

/// The envelope of every list.
pub fn page_json(items: Vec<Value>, page: i64, per_page: i64, total: i64) -> Value {
    json!({ "items": items, "page": page, "per_page": per_page, "total": total })
}

/// Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(rfc3339(m)))
}

/// Tells a missing field (`None`) from an explicit `null` (`Some(None)`),
/// which PATCH bodies need to unset a value.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A display name: trimmed, 1 to 200 characters, no control characters.
/// Any other Unicode is welcome.
pub fn check_name(field: &str, name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field} must be 1 to 200 characters without control characters"),
        )
        .with_details(json!({ "field": field })));
    }
    Ok(name.to_owned())
}

/// A free text (description, comment, message) of at most `max` characters.
pub fn check_text(field: &str, text: &str, max: usize) -> ApiResult<String> {
    if text.chars().count() > max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field} longer than {max} characters"),
        )
        .with_details(json!({ "field": field })));
    }
    Ok(text.to_owned())
}

/// Ids are UUIDs; anything else is simply not found.
pub fn check_id(what: &str, id: &str) -> ApiResult<()> {
    if crate::store::is_id(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(what))
    }
}
