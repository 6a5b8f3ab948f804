//! `/api/pools`: pools, their target history and rollback.

use axum::extract::State;
use axum::http::StatusCode;
use pacsync_core::analysis::Overrides;
use pacsync_core::exclusion::Pattern;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, AppState, Json, PageQuery, Path, Query, check_id, check_name, check_text,
    double_option, page_json, rfc3339,
};
use crate::auth::{Principal, Role};
use crate::store::models::{PoolRow, PoolTargetRow};
use crate::store::pools::{self, Expected, NewTarget, PoolSpec};
use crate::store::{StoreError, content, status};

pub const DEFAULT_GRACE_SECS: i64 = 3600;
const MAX_GRACE_SECS: i64 = 365 * 24 * 3600;
const MAX_EXCLUSIONS: usize = 1000;

pub fn pool_json(p: &PoolRow) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "keep_extras": p.keep_extras,
        "auto_sync": p.auto_sync,
        "offline_grace_secs": p.offline_grace_secs,
        "exclusions": serde_json::from_str::<Value>(&p.exclusions).unwrap_or(Value::Null),
        "repository_overrides": serde_json::from_str::<Value>(&p.repo_overrides).unwrap_or(Value::Null),
        "analysis_excluded": serde_json::from_str::<Value>(&p.analysis_excluded).unwrap_or(Value::Null),
        "current_target_id": p.current_target_id,
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
    })
}

pub fn target_json(t: &PoolTargetRow) -> Value {
    json!({
        "id": t.id,
        "pool_id": t.pool_id,
        "seq": t.seq,
        "hash": t.target_hash,
        "kind": t.kind,
        "created_by": t.created_by,
        "from_endpoint_id": t.from_endpoint_id,
        "from_endpoint_name": t.from_endpoint_name,
        "comment": t.comment,
        "created_at": rfc3339(t.created_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    name: Option<String>,
    description: Option<String>,
    keep_extras: Option<bool>,
    auto_sync: Option<bool>,
    offline_grace_secs: Option<i64>,
    exclusions: Option<Vec<String>>,
    repository_overrides: Option<OverridesBody>,
}

/// Admins' decisions over the repository analysis, by package name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverridesBody {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

impl PoolBody {
    /// Applies this body over `base` (a new pool's defaults or the pool
    /// being patched), checking every field.
    fn apply(self, base: PoolSpec) -> ApiResult<PoolSpec> {
        let invalid = |field: &str, message: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
                .with_details(json!({ "field": field }))
        };
        let name = match self.name {
            Some(n) => check_name("name", &n)?,
            None => base.name,
        };
        let grace = self.offline_grace_secs.unwrap_or(base.offline_grace_secs);
        if !(60..=MAX_GRACE_SECS).contains(&grace) {
            return Err(invalid(
                "offline_grace_secs",
                "offline_grace_secs must be between 60 and 31536000".into(),
            ));
        }
        let exclusions = self.exclusions.unwrap_or(base.exclusions);
        if exclusions.len() > MAX_EXCLUSIONS {
            return Err(invalid(
                "exclusions",
                format!("at most {MAX_EXCLUSIONS} exclusion patterns"),
            ));
        }
        for p in &exclusions {
            Pattern::new(p).map_err(|e| invalid("exclusions", e.to_string()))?;
        }
        let overrides = match self.repository_overrides {
            None => base.overrides,
            Some(o) => {
                if o.include.len() + o.exclude.len() > MAX_EXCLUSIONS * 10 {
                    return Err(invalid(
                        "repository_overrides",
                        "too many override names".into(),
                    ));
                }
                for n in o.include.iter().chain(&o.exclude) {
                    if n.is_empty()
                        || n.len() > 256
                        || n.chars().any(|c| c.is_control() || c.is_whitespace())
                    {
                        return Err(invalid(
                            "repository_overrides",
                            format!("{n:?} is not a package name"),
                        ));
                    }
                }
                Overrides {
                    include: o.include.into_iter().collect(),
                    exclude: o.exclude.into_iter().collect(),
                }
            }
        };
        Ok(PoolSpec {
            name,
            description: check_text(
                "description",
                &self.description.unwrap_or(base.description),
                2000,
            )?,
            keep_extras: self.keep_extras.unwrap_or(base.keep_extras),
            auto_sync: self.auto_sync.unwrap_or(base.auto_sync),
            offline_grace_secs: grace,
            exclusions,
            overrides,
        })
    }
}

pub async fn create(
    State(app): State<AppState>,
    who: Principal,
    Json(body): Json<PoolBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(Role::Admin)?;
    if body.name.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "name is required",
        )
        .with_details(json!({ "field": "name" })));
    }
    let spec = body.apply(PoolSpec {
        name: String::new(),
        description: String::new(),
        keep_extras: false,
        auto_sync: false,
        offline_grace_secs: DEFAULT_GRACE_SECS,
        exclusions: Vec::new(),
        overrides: Overrides::default(),
    })?;
    let actor = who.actor();
    let row = app
        .store
        .write(move |conn| pools::create(conn, spec, &actor))
        .await?;
    Ok((StatusCode::CREATED, Json(pool_json(&row))))
}

pub async fn list(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let (page, per_page, offset) = q.offset_limit()?;
    let (rows, total) = app
        .store
        .run(move |conn| pools::list(conn, offset, per_page))
        .await?;
    Ok(Json(page_json(
        rows.iter().map(pool_json).collect(),
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
    who.require(Role::Viewer)?;
    check_id("pool", &id)?;
    let row = app.store.run(move |conn| pools::get(conn, &id)).await?;
    Ok(Json(pool_json(&row)))
}

pub async fn update(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<PoolBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    check_id("pool", &id)?;
    let actor = who.actor();
    let row = app
        .store
        .write(move |conn| {
            let current = pools::get(conn, &id)?;
            let base = PoolSpec {
                name: current.name.clone(),
                description: current.description.clone(),
                keep_extras: current.keep_extras,
                auto_sync: current.auto_sync,
                offline_grace_secs: current.offline_grace_secs,
                exclusions: serde_json::from_str(&current.exclusions)
                    .map_err(anyhow::Error::from)?,
                overrides: crate::store::repos::overrides_of(&current)?,
            };
            let spec = body.apply(base).map_err(|e| StoreError::Invalid {
                code: e.code,
                message: e.message,
            })?;
            pools::update(conn, &id, spec, &actor, app.analysis)
        })
        .await?;
    Ok(Json(pool_json(&row)))
}

pub async fn delete(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::Admin)?;
    check_id("pool", &id)?;
    let actor = who.actor();
    app.store
        .write(move |conn| pools::delete(conn, &id, &actor))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn targets(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    check_id("pool", &id)?;
    let (page, per_page, offset) = q.offset_limit()?;
    let (rows, total) = app
        .store
        .run(move |conn| pools::targets(conn, &id, offset, per_page))
        .await?;
    Ok(Json(page_json(
        rows.iter().map(target_json).collect(),
        page,
        per_page,
        total,
    )))
}

/// One target with its packages.
pub async fn target(
    State(app): State<AppState>,
    who: Principal,
    Path((id, target_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    check_id("pool", &id)?;
    check_id("target", &target_id)?;
    let (row, content) = app
        .store
        .run(move |conn| {
            let row = pools::target(conn, &id, &target_id)?;
            let content = content::get_target(conn, &row.target_hash)?;
            Ok((row, content))
        })
        .await?;
    let mut out = target_json(&row);
    out["packages"] = serde_json::to_value(&*content).map_err(anyhow::Error::from)?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    target_id: String,
    #[serde(default)]
    comment: String,
    #[serde(default, deserialize_with = "double_option")]
    expected_target: Option<Option<String>>,
}

/// Makes an earlier target of the pool current again, as a new history
/// entry (history is never rewritten).
pub async fn rollback(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<Rollback>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    check_id("pool", &id)?;
    let comment = check_text("comment", &body.comment, 2000)?;
    let actor = who.actor();
    let expected = body
        .expected_target
        .map_or(Expected::Current, Expected::Target);
    let target_id = body.target_id;
    let analysis = app.analysis;
    let row = app
        .store
        .write(move |conn| {
            pools::get(conn, &id)?;
            let old = pools::target(conn, &id, &target_id).map_err(|_| {
                StoreError::invalid("unknown_target", "no such target in this pool")
            })?;
            pools::set_target(
                conn,
                &id,
                expected,
                NewTarget {
                    target_hash: old.target_hash,
                    kind: "rollback",
                    created_by: actor,
                    from_endpoint_id: None,
                    from_endpoint_name: None,
                    comment,
                },
                analysis,
            )
        })
        .await?;
    status::recompute_pool_in_steps(&app.store, &row.pool_id).await?;
    app.archive.fill_later(&app.store, &row.pool_id, &row.id);
    Ok(Json(target_json(&row)))
}
