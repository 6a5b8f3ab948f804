//! The JSON API: routes, shared state, and what every handler uses
//! (who is calling, pagination, time format).

pub mod auth;
pub mod endpoints;
pub mod error;
pub mod operations;
pub mod pools;
pub mod principal;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
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
    /// Turns true when the server shuts down; WebSocket sessions close.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Held by every clone, so the server knows when the last connection
    /// and session are gone; never sent on.
    pub alive: tokio::sync::mpsc::Sender<()>,
}

pub fn router(state: AppState) -> Router {
    use endpoints as e;
    use operations as o;
    use pools as p;
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics::render))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/refresh", post(auth::refresh))
        .route("/api/users", get(auth::list_users).post(auth::create_user))
        .route(
            "/api/enrollment-tokens",
            get(auth::list_enrollments).post(auth::create_enrollment),
        )
        .route(
            "/api/enrollment-tokens/{id}",
            axum::routing::delete(auth::revoke_enrollment),
        )
        .route("/api/audit", get(auth::audit))
        .route("/api/pools", get(p::list).post(p::create))
        .route(
            "/api/pools/{id}",
            get(p::get).patch(p::update).delete(p::delete),
        )
        .route("/api/pools/{id}/targets", get(p::targets))
        .route("/api/pools/{id}/targets/{target_id}", get(p::target))
        .route("/api/pools/{id}/rollback", post(p::rollback))
        .route("/api/pools/{id}/operations", get(o::list_for_pool))
        .route("/api/endpoints", get(e::list))
        .route("/api/endpoints/register", post(auth::register))
        .route(
            "/api/endpoints/{id}",
            get(e::get).patch(e::update).delete(e::delete),
        )
        .route(
            "/api/endpoints/{id}/state",
            put(e::report_state)
                .get(e::current_state)
                .layer(DefaultBodyLimit::max(STATE_BODY_LIMIT)),
        )
        .route("/api/endpoints/{id}/states", get(e::state_history))
        .route("/api/endpoints/{id}/plan", get(e::plan))
        .route("/api/endpoints/{id}/target", get(e::target))
        .route("/api/endpoints/{id}/set-latest", post(o::set_latest))
        .route("/api/endpoints/{id}/sync", post(o::sync))
        .route("/api/endpoints/{id}/revert", post(o::revert))
        .route("/api/endpoints/{id}/operations", get(o::list_for_endpoint))
        .route("/api/operations/{id}", get(o::get))
        .route("/api/operations/{id}/cancel", post(o::cancel))
        .route("/api/operations/{id}/progress", post(o::progress))
        .route("/api/ws", get(ws::connect))
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
