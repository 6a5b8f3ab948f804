//! `/api/endpoints`: machines, their state reports, plan and target.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pacsync_core::package::Package;
use pacsync_core::plan::SyncPlan;
use pacsync_core::state::{ContentHash, PackageState, TargetState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, AppState, Json, PageQuery, Path, Query, check_id, check_name,
    double_option, opt_time, page_json, rfc3339,
};
use crate::auth::{Principal, Role};
use crate::store::endpoints::{self, EndpointPatch, ListFilter};
use crate::store::models::EndpointRow;
use crate::store::{StoreError, content, operations, status};

pub fn endpoint_json(e: &EndpointRow, pool_name: Option<&str>) -> Value {
    json!({
        "id": e.id,
        "name": e.name,
        "pool_id": e.pool_id,
        "pool_name": pool_name,
        "status": e.status,
        "last_error": e.last_error,
        "state_hash": e.state_hash,
        "last_seen_at": opt_time(e.last_seen_at),
        "state_changed_at": opt_time(e.state_changed_at),
        "created_at": rfc3339(e.created_at),
        "updated_at": rfc3339(e.updated_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<i64>,
    per_page: Option<i64>,
    pool_id: Option<String>,
    status: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let (page, per_page, offset) = PageQuery::resolve(q.page, q.per_page)?;
    if let Some(s) = &q.status
        && s.parse::<pacsync_core::status::EndpointStatus>().is_err()
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("unknown status {s:?}"),
        ));
    }
    let filter = ListFilter {
        pool_id: q.pool_id,
        status: q.status,
    };
    let (rows, total) = app
        .store
        .run(move |conn| endpoints::list(conn, &filter, offset, per_page))
        .await?;
    Ok(Json(page_json(
        rows.iter()
            .map(|(e, pool)| endpoint_json(e, pool.as_deref()))
            .collect(),
        page,
        per_page,
        total,
    )))
}

pub async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Viewer)?;
    let (row, pool) = app
        .store
        .run(move |conn| endpoints::get_named(conn, &id))
        .await?;
    Ok(Json(endpoint_json(&row, pool.as_deref())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pool_id: Option<Option<String>>,
}

pub async fn update(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<Patch>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require(Role::Admin)?;
    let patch = EndpointPatch {
        name: body
            .name
            .as_deref()
            .map(|n| check_name("name", n))
            .transpose()?,
        pool_id: body.pool_id,
    };
    let actor = who.actor();
    let (row, pool) = app
        .store
        .write(move |conn| endpoints::update(conn, &id, patch, &actor, app.analysis))
        .await?;
    Ok(Json(endpoint_json(&row, pool.as_deref())))
}

pub async fn delete(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_id("endpoint", &id)?;
    who.require(Role::Admin)?;
    let actor = who.actor();
    app.store
        .write(move |conn| endpoints::delete(conn, &id, &actor, app.analysis))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateReport {
    hash: String,
    packages: Option<Vec<Package>>,
}

/// A machine reports its state: the hash alone when the server may know
/// the content already (204 if it does, 409 `state_content_required` if
/// not), or hash and packages (the hash must match the content).
pub async fn report_state(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<StateReport>,
) -> ApiResult<Response> {
    check_id("endpoint", &id)?;
    who.require_machine(&id)?;
    let hash: ContentHash = body.hash.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_hash",
            "hash must be 64 hex digits",
        )
    })?;
    let hash = hash.to_string();
    let state_id = id.clone();
    let hash2 = hash.clone();
    match body.packages {
        Some(packages) => {
            let state = PackageState::from(packages);
            let actual = state.content_hash().to_string();
            if actual != hash {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "hash_mismatch",
                    "the hash does not match the packages sent",
                )
                .with_details(json!({ "expected": actual })));
            }
            // Stored outside the write transaction: compression is the slow
            // part, and a state nobody points at yet harms no one.
            app.store
                .run(move |conn| content::put_state(conn, &state))
                .await?;
        }
        None => {
            let known = app
                .store
                .run(move |conn| content::has_state(conn, &hash2))
                .await?;
            if !known {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "state_content_required",
                    "the server does not have this state; send it again with its packages",
                )
                .with_details(json!({ "hash": hash })));
            }
        }
    }
    let hash3 = hash.clone();
    app.store
        .write(move |conn| endpoints::report_state(conn, &state_id, &hash3))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The machine's current state with its packages.
pub async fn current_state(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Viewer)?;
    let (hash, state) = app
        .store
        .run(move |conn| {
            let ep = endpoints::get(conn, &id)?;
            let hash = ep.state_hash.ok_or(StoreError::NotFound("state"))?;
            let state = content::get_state(conn, &hash)?;
            Ok((hash, state))
        })
        .await?;
    Ok(Json(json!({ "hash": hash, "packages": state })))
}

pub async fn state_history(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Viewer)?;
    let (page, per_page, offset) = q.offset_limit()?;
    let (rows, total) = app
        .store
        .run(move |conn| endpoints::state_history(conn, &id, offset, per_page))
        .await?;
    let items = rows
        .iter()
        .map(|r| json!({ "hash": r.state_hash, "reported_at": rfc3339(r.reported_at) }))
        .collect();
    Ok(Json(page_json(items, page, per_page, total)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    /// `sync` (default) or `revert`.
    kind: Option<String>,
}

fn plan_json(kind: &str, target_hash: &str, state_hash: &str, plan: &SyncPlan) -> Value {
    json!({
        "kind": kind,
        "target_hash": target_hash,
        "state_hash": state_hash,
        "summary": plan.summary(),
        "steps": plan.steps,
    })
}

/// The preview: what a sync or a revert would change on the machine.
pub async fn plan(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PlanQuery>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Viewer)?;
    let kind = q.kind.unwrap_or_else(|| "sync".into());
    if kind != "sync" && kind != "revert" {
        return Err(ApiError::bad_request(
            "invalid_query",
            "kind must be sync or revert",
        ));
    }
    let out = app
        .store
        .run(move |conn| {
            let ep = endpoints::get(conn, &id)?;
            let state_hash = ep.state_hash.clone().ok_or_else(|| {
                StoreError::conflict("no_state", "the machine has not reported a state yet")
            })?;
            let state = content::get_state(conn, &state_hash)?;
            if kind == "revert" {
                let back = operations::revert_state(conn, &id)?.ok_or_else(|| {
                    StoreError::conflict("nothing_to_revert", "no earlier state to go back to")
                })?;
                let old = content::get_state(conn, &back)?;
                let target = TargetState::from_state(&old, &Default::default());
                let plan = pacsync_core::plan::plan(&state, &target, &Default::default());
                return Ok(plan_json("revert", &back, &state_hash, &plan));
            }
            let pool_id = ep
                .pool_id
                .ok_or_else(|| StoreError::conflict("unassigned", "the machine is in no pool"))?;
            let view = status::load_pool(conn, &pool_id)?;
            let plan = status::sync_plan(&view, &state)
                .ok_or_else(|| StoreError::conflict("no_target", "the pool has no target yet"))?;
            let target_hash = view.target.map(|(t, _)| t.target_hash).unwrap_or_default();
            Ok(plan_json("sync", &target_hash, &state_hash, &plan))
        })
        .await?;
    Ok(Json(out))
}

/// The target the machine should have, with the pool's policy: what a
/// daemon needs to compute and apply its own plan.
pub async fn target(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    check_id("endpoint", &id)?;
    who.require_endpoint(&id, Role::Viewer)?;
    let out = app
        .store
        .run(move |conn| {
            let ep = endpoints::get(conn, &id)?;
            let pool_id = ep
                .pool_id
                .ok_or_else(|| StoreError::conflict("unassigned", "the machine is in no pool"))?;
            let view = status::load_pool(conn, &pool_id)?;
            let (row, target) = view
                .target
                .ok_or_else(|| StoreError::conflict("no_target", "the pool has no target yet"))?;
            Ok(json!({
                "pool_id": pool_id,
                "target": super::pools::target_json(&row),
                "policy": view.policy,
                "packages": target,
            }))
        })
        .await?;
    Ok(Json(out))
}
