//! `/api/repositories`: machines report the repositories they sync from,
//! admins see which are in use and each pool's repository analysis.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use pacsync_core::analysis::{Availability, RepoIndex};
use pacsync_core::version::Version;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, AppState, Json, PageQuery, Query, check_id, check_name, page_json,
};
use crate::auth::{Principal, Role};
use crate::store::{StoreError, endpoints, repos};

/// More than any pacman.conf has; bounds the work of one report.
const MAX_REPOSITORIES: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoReport {
    name: String,
    hash: String,
    /// Package name → version; sent only when the server asked for it.
    packages: Option<BTreeMap<String, Version>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// In pacman.conf order: the first repository offering a name wins.
    repositories: Vec<RepoReport>,
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// A machine reports its repositories like its state: hashes first (204
/// when the server has every content, else 409
/// `repository_content_required` naming the missing hashes), then the
/// contents it lacks.
pub async fn report(
    State(app): State<AppState>,
    who: Principal,
    Json(body): Json<ReportBody>,
) -> ApiResult<StatusCode> {
    let Principal::Machine { endpoint_id } = who else {
        return Err(ApiError::forbidden("only machines report repositories"));
    };
    if body.repositories.len() > MAX_REPOSITORIES {
        return Err(invalid(
            "invalid_field",
            format!("at most {MAX_REPOSITORIES} repositories"),
        ));
    }
    let mut hashes = Vec::new();
    let mut contents = Vec::new();
    for r in body.repositories {
        let name = check_name("name", &r.name)?;
        let hash = r.hash.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("invalid_hash", "hash must be 64 hex digits"));
        }
        if let Some(packages) = r.packages {
            let index = RepoIndex { name, packages };
            let actual = index.content_hash();
            if actual != hash {
                return Err(invalid(
                    "hash_mismatch",
                    "the hash does not match the repository sent",
                )
                .with_details(json!({ "name": index.name, "expected": actual })));
            }
            contents.push(index);
        }
        hashes.push(hash);
    }
    // Contents are stored outside the write transaction, like states.
    let wanted = hashes.clone();
    let missing = app
        .store
        .run(move |conn| {
            for c in &contents {
                repos::put(conn, c)?;
            }
            repos::missing(conn, &wanted)
        })
        .await?;
    if !missing.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "repository_content_required",
            "the server does not have these repositories; send them again with their packages",
        )
        .with_details(json!({ "missing": missing })));
    }
    let analysis = app.analysis;
    app.store
        .write(move |conn| {
            let ep = endpoints::get(conn, &endpoint_id)?;
            if repos::report(conn, &endpoint_id, &hashes)?
                && analysis
                && let Some(pool) = &ep.pool_id
            {
                repos::after_change(conn, pool)?;
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<i64>,
    per_page: Option<i64>,
    pool_id: Option<String>,
}

/// The distinct repositories machines use, with how many use each.
pub async fn list(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let (page, per_page, offset) = PageQuery::resolve(q.page, q.per_page)?;
    let pool = q.pool_id;
    let (rows, total) = app
        .store
        .run(move |conn| repos::list(conn, pool.as_deref(), offset, per_page))
        .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            json!({
                "hash": r.hash,
                "name": r.name,
                "package_count": r.package_count,
                "machines": r.machines,
            })
        })
        .collect();
    Ok(Json(page_json(items, page, per_page, total)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeQuery {
    pool: String,
}

/// A pool's repository analysis: per target package, where each distinct
/// repository configuration of the members would get it, whether every
/// member can, and what is excluded (automatically or by an admin).
pub async fn analyze(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<AnalyzeQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    if !app.analysis {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "analysis_disabled",
            "repository analysis is switched off (ENABLE_REPOSITORY_ANALYSIS)",
        ));
    }
    check_id("pool", &q.pool)?;
    let pool_id = q.pool;
    let (result, overrides) = app
        .store
        .run(move |conn| {
            let pool = crate::store::pools::get(conn, &pool_id)?;
            let result = repos::analyze_pool(conn, &pool_id)?;
            if result.target_hash.is_none() {
                return Err(StoreError::conflict(
                    "no_target",
                    "the pool has no target yet",
                ));
            }
            Ok((result, repos::overrides_of(&pool)?))
        })
        .await?;
    let a = &result.analysis;
    let columns: Vec<Value> = result
        .groups
        .iter()
        .map(|machines| json!({ "machines": machines }))
        .collect();
    Ok(Json(json!({
        "target_hash": result.target_hash,
        "overrides": overrides,
        "excluded": a.excluded_names(),
        "summary": {
            "packages": a.packages.len(),
            "everywhere": a.count(Availability::Everywhere),
            "partial": a.count(Availability::Partial),
            "nowhere": a.count(Availability::Nowhere),
            "version_conflicts": a.conflicts().count(),
        },
        "columns": columns,
        "packages": a.packages,
    })))
}
