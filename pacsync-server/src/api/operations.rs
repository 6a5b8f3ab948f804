//! Operations: sync, set-latest and revert requests, their status,
//! cancellation and the machine's progress reports.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::pools::target_json;
use super::{
    ApiError, ApiResult, AppState, Json, PageQuery, Path, Query, check_id, check_text,
    double_option, page_json,
};
use crate::auth::{Principal, Role};
use crate::store::operations::{self, Progress, operation_json};
use crate::store::pools::Expected;
use crate::store::status;

/// A JSON body that may be left out entirely (then `T::default()`).
fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() {
            "invalid_body"
        } else {
            "malformed_json"
        };
        ApiError::bad_request(code, e.to_string())
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLatest {
    #[serde(default)]
    comment: String,
    /// The target id the caller saw (`null`: none yet); when given, the
    /// request fails with `target_conflict` if another one is in force.
    #[serde(default, deserialize_with = "double_option")]
    expected_target: Option<Option<String>>,
}

pub async fn set_latest(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Operator)?;
    let body = body.map_err(|r| ApiError::new(r.status(), "bad_request", r.body_text()))?;
    let body: SetLatest = optional_body(&body)?;
    let comment = check_text("comment", &body.comment, 2000)?;
    let expected = body
        .expected_target
        .map_or(Expected::Current, Expected::Target);
    let actor = who.actor();
    let row = app
        .store
        .write(move |conn| {
            operations::set_latest(conn, &id, expected, comment, &actor, app.analysis)
        })
        .await?;
    status::recompute_pool_in_steps(&app.store, &row.pool_id).await?;
    app.archive.fill_later(&app.store, &row.pool_id, &row.id);
    Ok(Json(target_json(&row)))
}

async fn request(
    app: AppState,
    who: Principal,
    id: String,
    kind: &'static str,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Operator)?;
    let actor = who.actor();
    let op = app
        .store
        .write(move |conn| operations::request(conn, &id, kind, &actor))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(operation_json(&op))))
}

pub async fn sync(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    request(app, who, id, "sync").await
}

pub async fn revert(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    request(app, who, id, "revert").await
}

pub async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_id("operation", &id)?;
    let op = app
        .store
        .run(move |conn| operations::get(conn, &id))
        .await?;
    who.require_endpoint(&op.endpoint_id, Role::Viewer)?;
    Ok(Json(operation_json(&op)))
}

pub async fn cancel(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_id("operation", &id)?;
    let op_id = id.clone();
    let op = app
        .store
        .run(move |conn| operations::get(conn, &op_id))
        .await?;
    who.require_endpoint(&op.endpoint_id, Role::Operator)?;
    let actor = who.actor();
    let op = app
        .store
        .write(move |conn| operations::cancel(conn, &id, &actor))
        .await?;
    Ok(Json(operation_json(&op)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// `running`, `succeeded` or `failed`.
    status: String,
    #[serde(default)]
    progress: i32,
    message: Option<String>,
}

pub async fn progress(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ProgressBody>,
) -> ApiResult<Json<Value>> {
    check_id("operation", &id)?;
    if !["running", "succeeded", "failed"].contains(&body.status.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "status must be running, succeeded or failed",
        )
        .with_details(json!({ "field": "status" })));
    }
    if !(0..=100).contains(&body.progress) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "progress must be 0 to 100",
        )
        .with_details(json!({ "field": "progress" })));
    }
    let message = body
        .message
        .as_deref()
        .map(|m| check_text("message", m, 4000))
        .transpose()?;
    let op_id = id.clone();
    let op = app
        .store
        .run(move |conn| operations::get(conn, &op_id))
        .await?;
    who.require_machine(&op.endpoint_id)?;
    let p = Progress {
        status: body.status,
        progress: body.progress,
        message,
    };
    let op = app
        .store
        .write(move |conn| operations::report_progress(conn, &id, p))
        .await?;
    Ok(Json(operation_json(&op)))
}

/// `?status=queued` and the like on operation lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<i64>,
    per_page: Option<i64>,
    status: Option<String>,
}

impl ListQuery {
    fn status(&self) -> ApiResult<Option<String>> {
        match &self.status {
            Some(s) if !operations::STATUSES.contains(&s.as_str()) => Err(ApiError::bad_request(
                "invalid_query",
                format!("status must be one of {}", operations::STATUSES.join(", ")),
            )),
            other => Ok(other.clone()),
        }
    }
}

/// A machine's operations; the daemon asks for `?status=queued` to learn
/// of syncs and reverts an admin requested while it was not listening.
pub async fn list_for_endpoint(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Viewer)?;
    let (page, per_page, offset) = PageQuery::resolve(q.page, q.per_page)?;
    let status = q.status()?;
    let (rows, total) = app
        .store
        .run(move |conn| {
            operations::list_for_endpoint(conn, &id, status.as_deref(), offset, per_page)
        })
        .await?;
    Ok(Json(page_json(
        rows.iter().map(operation_json).collect(),
        page,
        per_page,
        total,
    )))
}

pub async fn list_for_pool(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    check_id("pool", &id)?;
    let (page, per_page, offset) = PageQuery::resolve(q.page, q.per_page)?;
    let status = q.status()?;
    let (rows, total) = app
        .store
        .run(move |conn| operations::list_for_pool(conn, &id, status.as_deref(), offset, per_page))
        .await?;
    Ok(Json(page_json(
        rows.iter().map(operation_json).collect(),
        page,
        per_page,
        total,
    )))
}
