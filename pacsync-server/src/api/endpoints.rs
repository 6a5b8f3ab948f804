//! `/api/endpoints`: machines, their state reports, plan and target.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use pacsync_core::package::Package;
use pacsync_core::plan::SyncPlan;
use pacsync_core::state::{ContentHash, PackageState, TargetState};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cache::Lookup;
use super::{
    ApiError, ApiResult, AppState, Json, PageQuery, Path, Query, check_id, check_name,
    double_option, page_json, rfc3339,
};
use crate::auth::{Principal, Role};
use crate::store::bases::Bases;
use crate::store::content::PreparedState;
use crate::store::endpoints::{self, EndpointPatch, ListFilter};
use crate::store::models::EndpointRow;
use crate::store::{StoreError, cache, content, operations, status};

/// A machine as the API shows it. A struct rather than `json!` so a list
/// page serializes straight to bytes: the fleet list is the hottest read.
#[derive(Debug, Serialize)]
pub struct EndpointView<'a> {
    id: &'a str,
    name: &'a str,
    pool_id: Option<&'a str>,
    pool_name: Option<&'a str>,
    status: &'a str,
    last_error: Option<&'a str>,
    state_hash: Option<&'a str>,
    last_seen_at: Option<String>,
    state_changed_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl<'a> EndpointView<'a> {
    pub fn new(e: &'a EndpointRow, pool_name: Option<&'a str>) -> Self {
        EndpointView {
            id: &e.id,
            name: &e.name,
            pool_id: e.pool_id.as_deref(),
            pool_name,
            status: &e.status,
            last_error: e.last_error.as_deref(),
            state_hash: e.state_hash.as_deref(),
            last_seen_at: e.last_seen_at.map(rfc3339),
            state_changed_at: e.state_changed_at.map(rfc3339),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

pub fn endpoint_json(e: &EndpointRow, pool_name: Option<&str>) -> Value {
    serde_json::to_value(EndpointView::new(e, pool_name)).unwrap_or(Value::Null)
}

/// The list envelope (as [`super::page_json`]) over borrowed items.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    items: Vec<T>,
    page: i64,
    per_page: i64,
    total: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<i64>,
    per_page: Option<i64>,
    pool_id: Option<String>,
    status: Option<String>,
}

thread_local! {
    /// Where list pages are serialized (about 70 KB for 200 machines).
    static PAGE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The fleet list: the hottest read, so whole pages are kept serialized
/// ([`super::cache::PageCache`]) while nothing they show changes. Past a
/// second a page is made again in the background, and served as it was
/// meanwhile (machines' `last_seen_at` may be up to two seconds late).
pub async fn list(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
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
    // Every role sees the same list, so the query alone is the key.
    let key = format!("{page}/{per_page}/{}", filter_key(&filter));
    let wanted = Wanted {
        filter,
        page,
        per_page,
        offset,
    };
    let pages = &app.caches.pages;
    let page = match pages.lookup(&key, Instant::now()) {
        Lookup::Hit(page) => page,
        Lookup::Stale(page, render) => {
            let app = app.clone();
            tokio::spawn(async move {
                match render_page(&app, wanted, render.generation(), render.started()).await {
                    Ok(body) => {
                        app.caches.pages.complete(render, body);
                    }
                    // Dropping the render retires the stale page.
                    Err(e) => tracing::warn!("making a page of the machine list failed: {e}"),
                }
            });
            page
        }
        Lookup::Render(render) => {
            let body = render_page(&app, wanted, render.generation(), render.started()).await?;
            pages.complete(render, body)
        }
        Lookup::Wait(wait) => match wait.page().await {
            Some(page) => page,
            // The render waited for failed: this request makes its own.
            None => {
                let (generation, started) = (pages.generation(), Instant::now());
                let body = render_page(&app, wanted, generation, started).await?;
                pages.insert(key, generation, started, body)
            }
        },
    };
    Ok(page.respond(&headers))
}

/// A page of the list, as asked for.
#[derive(Debug)]
struct Wanted {
    filter: ListFilter,
    page: i64,
    per_page: i64,
    offset: i64,
}

/// What a list's total depends on.
fn filter_key(f: &ListFilter) -> String {
    format!(
        "{}/{}",
        f.pool_id.as_deref().unwrap_or_default(),
        f.status.as_deref().unwrap_or_default()
    )
}

/// Reads and serializes a page of the list. Its total changes only with
/// what the counter `generation` sees, so it is counted once per counter
/// (and time-to-live) for all pages of a filter rather than for each.
async fn render_page(
    app: &AppState,
    wanted: Wanted,
    generation: u64,
    started: Instant,
) -> Result<Bytes, StoreError> {
    let Wanted {
        filter,
        page,
        per_page,
        offset,
    } = wanted;
    let totals = filter_key(&filter);
    let known = app.caches.pages.total(&totals, generation, started);
    // Serialized where the rows were loaded, into that thread's reused
    // buffer, then copied out at its exact size: the kept page is one
    // allocation that fits, not a doubled buffer's, and the rows' many
    // small allocations are freed by the thread that made them.
    let (body, total) = app
        .store
        .run(move |conn| {
            let total = match known {
                Some(total) => total,
                None => endpoints::count(conn, &filter)?,
            };
            let rows = endpoints::page(conn, &filter, offset, per_page)?;
            let page = Page {
                items: rows
                    .iter()
                    .map(|(e, pool)| EndpointView::new(e, pool.as_deref()))
                    .collect(),
                page,
                per_page,
                total,
            };
            PAGE_BUFFER.with_borrow_mut(|buf| {
                buf.clear();
                serde_json::to_writer(&mut *buf, &page).map_err(|e| StoreError::Other(e.into()))?;
                Ok((Bytes::copy_from_slice(buf), total))
            })
        })
        .await?;
    if known.is_none() {
        app.caches
            .pages
            .keep_total(totals, generation, started, total);
    }
    Ok(body)
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

fn body_error(e: &serde_json::Error) -> ApiError {
    if e.is_data() {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.to_string(),
        )
    } else {
        ApiError::bad_request("malformed_json", e.to_string())
    }
}

fn content_required(hash: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "state_content_required",
        "the server does not have this state; send it again with its packages",
    )
    .with_details(json!({ "hash": hash }))
}

/// Checks a full report's packages and makes their content ready to
/// store. Runs on an upload worker ([`crate::uploads`]): UTF-8 checked
/// once, parsed once, hashed once, compressed before the report's write
/// transaction (which inserts it).
pub fn check_content(body: &[u8], bases: &Bases) -> Result<crate::uploads::Upload, ApiError> {
    let body = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))?;
    let (claimed, state) = content::read_report(body).map_err(|e| body_error(&e))?;
    let claimed: ContentHash = claimed.parse().map_err(|_| invalid_hash())?;
    let state = state.unwrap_or_default();
    let actual = state.content_hash();
    if actual != claimed {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "hash_mismatch",
            "the hash does not match the packages sent",
        )
        .with_details(json!({ "expected": actual.to_string() })));
    }
    let state = Arc::new(state);
    let hash = actual.to_string();
    // A machine sends its packages after the server answered that it lacks
    // them, so the content is made ready to insert without asking the
    // database first (a trip there per upload, with the worker waiting);
    // the insert does nothing if the content got there meanwhile. Only a
    // content the server was seen to hold lately is not: the report's
    // transaction checks it is still there.
    let new = if cache::KNOWN_STATES.get(&hash).is_some() {
        None
    } else {
        Some(content::prepare_state_report(
            &state,
            hash.clone(),
            body.as_bytes(),
            Some(bases),
        )?)
    };
    Ok(crate::uploads::Upload { hash, state, new })
}

fn invalid_hash() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_hash",
        "hash must be 64 hex digits",
    )
}

/// A machine reports its state: the hash alone when the server may know
/// the content already (204 if it does, 409 `state_content_required` if
/// not), or hash and packages (the hash must match the content).
///
/// The body is taken raw: a full report is a few hundred KiB of JSON,
/// parsed, hashed and compressed by an upload worker.
pub async fn report_state(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    check_id("endpoint", &id)?;
    who.require_machine(&id)?;
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ));
    }
    let body = body.map_err(|r| {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(r.status(), code, r.body_text())
    })?;
    // A hash-only report is a few dozen bytes; anything big carries packages.
    let (hash, new) = if body.len() < 256 {
        let report: StateReport = serde_json::from_slice(&body).map_err(|e| body_error(&e))?;
        let hash: ContentHash = report.hash.parse().map_err(|_| invalid_hash())?;
        match report.packages {
            None => {
                let hash = hash.to_string();
                // A state the server lacks is answered without a writer's
                // turn; one it was seen to hold goes straight to the
                // report's transaction, which checks again either way.
                if cache::KNOWN_STATES.get(&hash).is_none() {
                    let h = hash.clone();
                    if !app.store.run(move |c| content::has_state(c, &h)).await? {
                        return Err(content_required(&hash));
                    }
                    cache::KNOWN_STATES.insert(hash.clone(), ());
                }
                // Most reports are of the state the machine had: one
                // statement, no transaction.
                let (i, h) = (id.clone(), hash.clone());
                let touched = app
                    .store
                    .write_statement(move |c| endpoints::touch_unchanged(c, &i, &h))
                    .await?;
                if touched {
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
                (hash, None)
            }
            Some(p) => {
                let state = Arc::new(PackageState::from(p));
                if state.content_hash() != hash {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "hash_mismatch",
                        "the hash does not match the packages sent",
                    )
                    .with_details(json!({ "expected": state.content_hash().to_string() })));
                }
                let hash = app
                    .store
                    .run(move |conn| content::put_state(conn, state))
                    .await?;
                (hash, None)
            }
        }
    } else {
        let upload = app.uploads.check(body.clone()).await?;
        (upload.hash, Some((upload.state, upload.new, body)))
    };
    let uploaded = match write_report(&app, &id, &hash, new).await {
        Err(Retry::Alone(state, body, base)) => {
            // The base it was compressed against is gone (see
            // `store::bases`): stored alone instead.
            app.store.bases().forget(&base);
            let h = hash.clone();
            let prepared = tokio::task::spawn_blocking(move || {
                content::prepare_state_report(&state, h, &body, None).map(|p| (state, p))
            })
            .await
            .map_err(|e| ApiError::internal(format!("compressing a state failed: {e}")))??;
            let (state, prepared) = prepared;
            write_report(
                &app,
                &id,
                &hash,
                Some((state, Some(prepared), Bytes::new())),
            )
            .await
            .map_err(Retry::into_error)?
        }
        other => other.map_err(Retry::into_error)?,
    };
    if let Some(state) = uploaded {
        // Cached after the commit, for the machines that report it next
        // by hash; the state this pushes out is freed on the blocking pool
        // (it touches every package), not on the thread answering requests.
        cache::KNOWN_STATES.insert(hash.clone(), ());
        let evicted = cache::STATES.insert(hash, state);
        if !evicted.is_empty() {
            tokio::task::spawn_blocking(move || drop(evicted));
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Why [`write_report`] failed.
enum Retry {
    /// The state's base is gone: the state, the report's body, the base.
    Alone(Arc<PackageState>, Bytes, String),
    Failed(ApiError),
}

impl Retry {
    fn into_error(self) -> ApiError {
        match self {
            Retry::Failed(e) => e,
            Retry::Alone(..) => ApiError::internal("a state's base is gone"),
        }
    }
}

/// A report's transaction: the machine's state is `hash`; `new` has the
/// state when the report carried it, with its content to insert unless
/// the server was seen to hold it lately, and the report's body. Gives the
/// state a report carried, for the caches.
async fn write_report(
    app: &AppState,
    id: &str,
    hash: &str,
    new: Option<(Arc<PackageState>, Option<PreparedState>, Bytes)>,
) -> Result<Option<Arc<PackageState>>, Retry> {
    let (id, reported) = (id.to_owned(), hash.to_owned());
    // What a retry needs if the content's base has gone meanwhile.
    let retry = new.as_ref().and_then(|(state, prepared, body)| {
        let base = prepared.as_ref()?.base()?;
        Some((state.clone(), body.clone(), base.to_owned()))
    });
    let written = app
        .store
        .write_touching(move |conn| {
            // A new content goes in with the report that names it: one
            // writer's turn, one commit. Its status needs the state: at
            // hand for this transaction, rather than through the small
            // cache, which concurrent reports may have moved on meanwhile
            // (and each would then read and parse its state again).
            let Some((state, new, _)) = new else {
                return endpoints::report_state(
                    conn,
                    &id,
                    &reported,
                    endpoints::Content::Unchecked,
                )
                .map(|touched| ((None, None), touched));
            };
            let known = match &new {
                Some(new) => endpoints::Content::New(new),
                // Seen stored lately, but retention may have removed it
                // since: stored unless it is there.
                None => {
                    content::put_state(conn, state.clone())?;
                    endpoints::Content::Stored
                }
            };
            let touched = content::with_state_at_hand(&reported, &state, || {
                endpoints::report_state(conn, &id, &reported, known)
            })?;
            let new_base = new.as_ref().and_then(PreparedState::new_base);
            Ok(((Some(state), new_base), touched))
        })
        .await;
    match written {
        Ok((state, new_base)) => {
            if let Some(base) = new_base {
                app.store.bases().adopt(base);
            }
            Ok(state)
        }
        Err(e) => match retry {
            Some((state, body, base)) if e.is_foreign_key_violation() => {
                Err(Retry::Alone(state, body, base))
            }
            _ => Err(Retry::Failed(match ApiError::from(e) {
                e if e.code == "state_content_required" => content_required(hash),
                e => e,
            })),
        },
    }
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
    Ok(Json(json!({ "hash": hash, "packages": &*state })))
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
                "packages": &*target,
            }))
        })
        .await?;
    Ok(Json(out))
}
