//! Status of machines against their pool's target, recomputed whenever a
//! state, a target, a pool's policy or an operation changes, in the same
//! transaction as the change.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use pacsync_core::exclusion::Exclusions;
use pacsync_core::plan::{Policy, SyncPlan, plan};
use pacsync_core::state::{PackageState, TargetState};
use pacsync_core::status::{Drift, EndpointStatus, Situation, drift, endpoint_status};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

use super::changes::Touched;
use super::models::{EndpointRow, PoolRow, PoolTargetRow};
use super::schema::{endpoints, operations, pool_targets, pools};
use super::{DbConnection, Store, StoreError, StoreResult, cache, content, holds, now_ms};
use crate::events::{self, Event, Scope};
use serde_json::json;

/// A pool as status computation needs it.
#[derive(Debug)]
pub struct PoolView {
    pub pool: PoolRow,
    pub policy: Policy,
    pub target: Option<(PoolTargetRow, Arc<TargetState>)>,
    /// Fingerprint of everything a drift depends on besides the state:
    /// target content, keep-extras, patterns, analysis names.
    pub drift_key: String,
}

/// The pool's own glob patterns: what set-latest leaves out of a target.
pub fn patterns_of(pool: &PoolRow) -> StoreResult<Exclusions> {
    let patterns: Vec<String> = serde_json::from_str(&pool.exclusions)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("pool exclusions unreadable: {e}")))?;
    Exclusions::from_patterns(patterns.iter().map(String::as_str))
        .map_err(|e| StoreError::Other(anyhow::anyhow!("stored exclusion invalid: {e}")))
}

/// The effective policy: the pool's patterns plus the names its repository
/// analysis excluded. Targets keep analysis-excluded packages (only the
/// comparison skips them), so a package coming back to every repository
/// is compared again without a new target.
pub fn policy_of(pool: &PoolRow) -> StoreResult<Policy> {
    let mut exclusions = patterns_of(pool)?;
    exclusions.names = serde_json::from_str(&pool.analysis_excluded)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("analysis exclusions unreadable: {e}")))?;
    Ok(Policy {
        keep_extras: pool.keep_extras,
        exclusions,
    })
}

/// The pool and its current target row, in one statement.
pub fn load_pool(conn: &mut DbConnection, pool_id: &str) -> StoreResult<PoolView> {
    let (pool, row): (PoolRow, Option<PoolTargetRow>) = pools::table
        .left_join(pool_targets::table.on(pool_targets::id.nullable().eq(pools::current_target_id)))
        .filter(pools::id.eq(pool_id))
        .select((PoolRow::as_select(), Option::<PoolTargetRow>::as_select()))
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("pool"))?;
    if pool.current_target_id.is_some() && row.is_none() {
        return Err(StoreError::NotFound("record"));
    }
    view_of(conn, pool, row)
}

/// The pool as a report needs it, and whether the machine `endpoint_id`
/// has an operation queued or running. On PostgreSQL the pool row is read
/// with a share lock (see [`crate::store::endpoints::report_state`]), the
/// target and the operation in the same statement; SQLite's writers are
/// serialized and need no lock.
pub(super) fn load_pool_for_report(
    conn: &mut DbConnection,
    pool_id: &str,
    endpoint_id: &str,
) -> StoreResult<(PoolView, bool)> {
    let DbConnection::Pg(pg) = conn else {
        let view = load_pool(conn, pool_id)?;
        return Ok((view, has_active_operation(conn, endpoint_id)?));
    };
    let locked = || {
        diesel::sql_query(
            "SELECT p.*, t.id AS t_id, t.pool_id AS t_pool_id, t.seq AS t_seq, \
             t.target_hash AS t_target_hash, t.kind AS t_kind, t.created_by AS t_created_by, \
             t.from_endpoint_id AS t_from_endpoint_id, \
             t.from_endpoint_name AS t_from_endpoint_name, t.comment AS t_comment, \
             t.created_at AS t_created_at, \
             EXISTS (SELECT 1 FROM operations o WHERE o.endpoint_id = $2 \
                     AND o.status IN ('queued', 'running')) AS running \
             FROM pools p LEFT JOIN pool_targets t ON t.id = p.current_target_id \
             WHERE p.id = $1 FOR SHARE OF p",
        )
        .bind::<diesel::sql_types::Text, _>(pool_id)
        .bind::<diesel::sql_types::Text, _>(endpoint_id)
    };
    // Having waited for the lock (a set-latest committing), PostgreSQL
    // gives the pool row as committed but the target as of the statement's
    // start, or no row at all; the lock is held by then, so a second read
    // sees what the first one missed.
    let mut found: Option<LockedPool> = locked().get_result(pg).optional()?;
    if found.is_none() {
        found = locked().get_result(pg).optional()?;
    }
    let mut found = found.ok_or(StoreError::NotFound("pool"))?;
    let running = found.running;
    let target = found.target();
    let row = match (&found.pool.current_target_id, target) {
        (None, _) => None,
        (Some(tid), Some(t)) if t.id == *tid => Some(t),
        (Some(tid), _) => Some(
            pool_targets::table
                .find(tid)
                .select(PoolTargetRow::as_select())
                .first(conn)?,
        ),
    };
    Ok((view_of(conn, found.pool, row)?, running))
}

/// A row of [`load_pool_for_report`]'s statement on PostgreSQL.
#[derive(QueryableByName)]
struct LockedPool {
    #[diesel(embed)]
    pool: PoolRow,
    #[diesel(sql_type = Nullable<Text>)]
    t_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    t_pool_id: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    t_seq: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    t_target_hash: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    t_kind: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    t_created_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    t_from_endpoint_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    t_from_endpoint_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    t_comment: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    t_created_at: Option<i64>,
    #[diesel(sql_type = Bool)]
    running: bool,
}

impl LockedPool {
    /// The target row, when the join found one.
    fn target(&mut self) -> Option<PoolTargetRow> {
        Some(PoolTargetRow {
            id: self.t_id.take()?,
            pool_id: self.t_pool_id.take()?,
            seq: self.t_seq?,
            target_hash: self.t_target_hash.take()?,
            kind: self.t_kind.take()?,
            created_by: self.t_created_by.take()?,
            from_endpoint_id: self.t_from_endpoint_id.take(),
            from_endpoint_name: self.t_from_endpoint_name.take(),
            comment: self.t_comment.take()?,
            created_at: self.t_created_at?,
        })
    }
}

/// A [`PoolView`] of a pool row and its current target row.
fn view_of(
    conn: &mut DbConnection,
    pool: PoolRow,
    row: Option<PoolTargetRow>,
) -> StoreResult<PoolView> {
    let target = match row {
        Some(row) => {
            let t = content::get_target(conn, &row.target_hash)?;
            Some((row, t))
        }
        None => None,
    };
    let mut h = Sha256::new();
    for part in [
        target.as_ref().map_or("", |(r, _)| r.target_hash.as_str()),
        if pool.keep_extras { "keep" } else { "strict" },
        &pool.exclusions,
        &pool.analysis_excluded,
    ] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    Ok(PoolView {
        policy: policy_of(&pool)?,
        drift_key: hex::encode(h.finalize()),
        pool,
        target,
    })
}

/// How a machine in state `state_hash` differs from the pool's target
/// (`None` without a target), memoized: machines sharing a state share it.
pub fn drift_of(
    conn: &mut DbConnection,
    view: &PoolView,
    state_hash: &str,
) -> StoreResult<Option<Drift>> {
    let Some((_, target)) = &view.target else {
        return Ok(None);
    };
    let key = format!("{}:{state_hash}", view.drift_key);
    if let Some(d) = cache::DRIFTS.get(&key) {
        return Ok(Some(d));
    }
    let state = content::get_state(conn, state_hash)?;
    let d = drift(&plan(&state, target, &view.policy));
    cache::DRIFTS.insert(key, d);
    Ok(Some(d))
}

/// The sync plan of a machine's state against its pool's target.
pub fn sync_plan(view: &PoolView, state: &PackageState) -> Option<SyncPlan> {
    view.target
        .as_ref()
        .map(|(_, target)| plan(state, target, &view.policy))
}

pub(super) fn has_active_operation(
    conn: &mut DbConnection,
    endpoint_id: &str,
) -> StoreResult<bool> {
    let n: i64 = operations::table
        .filter(operations::endpoint_id.eq(endpoint_id))
        .filter(operations::status.eq_any(["queued", "running"]))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Whether a machine last heard from at `last_seen` is online under the
/// pool's grace period.
pub fn is_online(last_seen: Option<i64>, grace_secs: i64, now: i64) -> bool {
    last_seen.is_some_and(|t| now.saturating_sub(t) <= grace_secs.saturating_mul(1000))
}

/// The status of one machine.
pub fn compute(
    conn: &mut DbConnection,
    ep: &EndpointRow,
    view: Option<&PoolView>,
) -> StoreResult<EndpointStatus> {
    let running = has_active_operation(conn, &ep.id)?;
    compute_knowing(conn, ep, view, running)
}

/// [`compute`] with whether an operation runs already known.
pub(super) fn compute_knowing(
    conn: &mut DbConnection,
    ep: &EndpointRow,
    view: Option<&PoolView>,
    operation_running: bool,
) -> StoreResult<EndpointStatus> {
    let situation = Situation {
        in_pool: view.is_some(),
        pool_has_target: view.is_some_and(|v| v.target.is_some()),
        // Without a pool there is no grace period to miss.
        online: view
            .is_none_or(|v| is_online(ep.last_seen_at, v.pool.offline_grace_secs, now_ms())),
        operation_running,
        last_operation_failed: ep.last_error.is_some(),
    };
    let drift = match (view, &ep.state_hash) {
        (Some(v), Some(h)) => drift_of(conn, v, h)?,
        _ => None,
    };
    Ok(endpoint_status(situation, drift))
}

fn store_status(
    conn: &mut DbConnection,
    ep: &EndpointRow,
    status: EndpointStatus,
) -> StoreResult<()> {
    if ep.status != status.as_str() {
        diesel::update(endpoints::table.find(&ep.id))
            .set(endpoints::status.eq(status.as_str()))
            .execute(conn)?;
        announce_status(&ep.id, ep.pool_id.as_deref(), &ep.status, status.as_str());
    }
    Ok(())
}

/// Tells admin clients that a machine's status changed.
pub(super) fn announce_status(
    endpoint_id: &str,
    pool_id: Option<&str>,
    previous: &str,
    status: &str,
) {
    let e = status_event(endpoint_id, pool_id, previous, status);
    events::emit(e.scope, e.message);
}

/// The event of [`announce_status`].
pub(super) fn status_event(
    endpoint_id: &str,
    pool_id: Option<&str>,
    previous: &str,
    status: &str,
) -> Event {
    Event {
        scope: Scope::Admins,
        message: json!({
            "type": "endpoint_status",
            "endpoint_id": endpoint_id,
            "pool_id": pool_id,
            "status": status,
            "previous": previous,
        }),
    }
}

/// Recomputes and stores one machine's status, with its row locked
/// ([`super::endpoints::lock`]) from the read to the end of the
/// transaction: no report can change the state the status is computed
/// from in between.
pub fn recompute_endpoint(
    conn: &mut DbConnection,
    endpoint_id: &str,
) -> StoreResult<EndpointStatus> {
    super::endpoints::lock(conn, endpoint_id)?;
    let ep: EndpointRow = endpoints::table
        .find(endpoint_id)
        .select(EndpointRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("endpoint"))?;
    let view = match &ep.pool_id {
        Some(p) => Some(load_pool(conn, p)?),
        None => None,
    };
    let status = compute(conn, &ep, view.as_ref())?;
    store_status(conn, &ep, status)?;
    Ok(status)
}

/// Recomputes every member of a pool; members sharing a state share the
/// work (see [`drift_of`]).
pub fn recompute_pool(conn: &mut DbConnection, pool_id: &str) -> StoreResult<()> {
    let view = load_pool(conn, pool_id)?;
    let members: Vec<EndpointRow> = endpoints::table
        .filter(endpoints::pool_id.eq(pool_id))
        .select(EndpointRow::as_select())
        .load(conn)?;
    for ep in &members {
        let status = compute(conn, ep, Some(&view))?;
        store_member_status(conn, ep, status)?;
    }
    Ok(())
}

/// Members whose status one write transaction recomputes after a new
/// target: reports, which need the same (single, on SQLite) writer, get in
/// between.
const MEMBERS_PER_WRITE: usize = 500;

/// Recomputes every member of a pool after its target changed, in short
/// write transactions rather than one long one. The sync plans of the
/// members' states against the target are worked out first on a read
/// connection (states are shared, so there are far fewer than members);
/// the writes then only look them up. A member whose state changes
/// meanwhile has its status recomputed by its own report, against the
/// same target; each step reads the pool afresh, so a newer target
/// meanwhile is simply the one compared with.
pub async fn recompute_pool_in_steps(store: &Store, pool_id: &str) -> StoreResult<()> {
    let pid = pool_id.to_owned();
    let ids: Vec<String> = store
        .run(move |conn| {
            let view = load_pool(conn, &pid)?;
            let members: Vec<(String, Option<String>)> = endpoints::table
                .filter(endpoints::pool_id.eq(&pid))
                .select((endpoints::id, endpoints::state_hash))
                .load(conn)?;
            let mut seen = HashSet::new();
            for hash in members.iter().filter_map(|(_, h)| h.as_deref()) {
                if seen.insert(hash) {
                    drift_of(conn, &view, hash)?;
                }
            }
            Ok(members.into_iter().map(|(id, _)| id).collect())
        })
        .await?;
    for chunk in ids.chunks(MEMBERS_PER_WRITE) {
        let (pid, chunk) = (pool_id.to_owned(), chunk.to_vec());
        store
            .write_touching(move |conn| {
                recompute_members(conn, &pid, &chunk).map(|()| ((), Touched::Listed))
            })
            .await?;
    }
    Ok(())
}

/// Recomputes the members `ids` of a pool (those still in it).
fn recompute_members(conn: &mut DbConnection, pool_id: &str, ids: &[String]) -> StoreResult<()> {
    let view = load_pool(conn, pool_id)?;
    let members: Vec<EndpointRow> = endpoints::table
        .filter(endpoints::id.eq_any(ids))
        .filter(endpoints::pool_id.eq(pool_id))
        .select(EndpointRow::as_select())
        .load(conn)?;
    let running: HashSet<String> = operations::table
        .filter(operations::endpoint_id.eq_any(ids))
        .filter(operations::status.eq_any(["queued", "running"]))
        .select(operations::endpoint_id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    for ep in &members {
        let status = compute_knowing(conn, ep, Some(&view), running.contains(&ep.id))?;
        store_member_status(conn, ep, status)?;
    }
    Ok(())
}

/// Stores the status a pool's recomputation worked out for member `ep`
/// from its row read without a lock: written if the row is still as read,
/// otherwise computed again from the row as it is now (a report or an
/// operation changed it meanwhile); nothing if the member was deleted.
fn store_member_status(
    conn: &mut DbConnection,
    ep: &EndpointRow,
    status: EndpointStatus,
) -> StoreResult<()> {
    if store_status_if_unmoved(conn, ep, status)? {
        return Ok(());
    }
    match recompute_endpoint(conn, &ep.id) {
        Err(StoreError::NotFound(_)) => Ok(()),
        other => other.map(drop),
    }
}

/// [`store_status`] for a status computed from a row read without a lock:
/// written only while the row's state and status are still those read.
/// A report that changed them meanwhile (on PostgreSQL, committing while
/// this waited for its row) must not have its status overwritten with one
/// computed from its previous state; `false` then, for the caller to
/// compute it again from the row as it is now.
fn store_status_if_unmoved(
    conn: &mut DbConnection,
    ep: &EndpointRow,
    status: EndpointStatus,
) -> StoreResult<bool> {
    if ep.status == status.as_str() {
        return Ok(true);
    }
    let written = diesel::update(
        endpoints::table
            .find(&ep.id)
            .filter(endpoints::status.eq(&ep.status))
            .filter(holds!(endpoints::state_hash, ep.state_hash.as_deref())),
    )
    .set(endpoints::status.eq(status.as_str()))
    .execute(conn)?;
    if written == 0 {
        return Ok(false);
    }
    announce_status(&ep.id, ep.pool_id.as_deref(), &ep.status, status.as_str());
    Ok(true)
}

/// Marks machines not heard from within their pool's grace period as
/// offline; statuses that outrank offline (syncing, error) stay. Returns
/// how many changed.
pub fn sweep_offline(conn: &mut DbConnection) -> StoreResult<usize> {
    let graces: Vec<(String, i64)> = pools::table
        .select((pools::id, pools::offline_grace_secs))
        .load(conn)?;
    let now = now_ms();
    let mut changed = 0;
    for (pool_id, grace) in graces {
        let stale = || {
            endpoints::table
                .filter(endpoints::pool_id.eq(pool_id.clone()))
                .filter(endpoints::last_seen_at.lt(now - grace.saturating_mul(1000)))
                .filter(endpoints::status.ne_all(["offline", "syncing", "error"]))
        };
        // Read first so each change can be announced with what it was.
        let going: Vec<(String, String)> = stale()
            .select((endpoints::id, endpoints::status))
            .load(conn)?;
        if going.is_empty() {
            continue;
        }
        changed += diesel::update(stale())
            .set(endpoints::status.eq(EndpointStatus::Offline.as_str()))
            .execute(conn)?;
        for (id, previous) in going {
            announce_status(
                &id,
                Some(&pool_id),
                &previous,
                EndpointStatus::Offline.as_str(),
            );
        }
    }
    Ok(changed)
}
