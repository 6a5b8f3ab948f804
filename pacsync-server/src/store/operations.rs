//! Operations on machines (sync, set-latest, revert) and their progress.

use diesel::prelude::*;
use pacsync_core::state::TargetState;
use serde_json::{Value, json};

use crate::api::{opt_time, rfc3339};
use crate::events::{self, Scope};

use super::models::{EndpointRow, OperationRow, PoolTargetRow};
use super::pools::{Expected, NewTarget};
use super::schema::{endpoints, operations};
use super::{
    DbConnection, StoreError, StoreResult, audit, content, endpoints as eps, new_id, now_ms, pools,
    status,
};

/// An operation as the API and the WebSocket show it.
pub fn operation_json(o: &OperationRow) -> Value {
    json!({
        "id": o.id,
        "endpoint_id": o.endpoint_id,
        "kind": o.kind,
        "status": o.status,
        "progress": o.progress,
        "message": o.message,
        "requested_by": o.requested_by,
        "target_hash": o.target_hash,
        "from_state_hash": o.from_state_hash,
        "created_at": rfc3339(o.created_at),
        "started_at": opt_time(o.started_at),
        "finished_at": opt_time(o.finished_at),
        "updated_at": rfc3339(o.updated_at),
    })
}

/// Tells admin clients where an operation stands.
fn announce(op: &OperationRow) {
    events::emit(
        Scope::Admins,
        json!({ "type": "operation_progress", "operation": operation_json(op) }),
    );
}

pub const ACTIVE: [&str; 2] = ["queued", "running"];
pub const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

fn in_progress() -> StoreError {
    StoreError::conflict(
        "operation_in_progress",
        "the machine already has an operation queued or running",
    )
}

pub fn get(conn: &mut DbConnection, id: &str) -> StoreResult<OperationRow> {
    operations::table
        .find(id)
        .select(OperationRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("operation"))
}

pub fn active_for(conn: &mut DbConnection, endpoint_id: &str) -> StoreResult<Option<OperationRow>> {
    Ok(operations::table
        .filter(operations::endpoint_id.eq(endpoint_id))
        .filter(operations::status.eq_any(ACTIVE))
        .select(OperationRow::as_select())
        .first(conn)
        .optional()?)
}

/// The state a revert goes back to: the one the machine had before its
/// last successful sync or revert.
pub fn revert_state(conn: &mut DbConnection, endpoint_id: &str) -> StoreResult<Option<String>> {
    Ok(operations::table
        .filter(operations::endpoint_id.eq(endpoint_id))
        .filter(operations::status.eq("succeeded"))
        .filter(operations::kind.eq_any(["sync", "revert"]))
        .order((
            operations::finished_at.desc(),
            operations::created_at.desc(),
        ))
        .select(operations::from_state_hash)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Queues a sync (to the pool's target) or a revert (to the state before
/// the last operation). The partial unique index on active operations
/// makes the second of two racing requests fail, which maps to the same
/// `operation_in_progress` as the check below.
pub fn request(
    conn: &mut DbConnection,
    endpoint_id: &str,
    kind: &'static str,
    actor: &str,
) -> StoreResult<OperationRow> {
    eps::lock(conn, endpoint_id)?;
    let ep = eps::get(conn, endpoint_id)?;
    if active_for(conn, endpoint_id)?.is_some() {
        return Err(in_progress());
    }
    let target_hash = match kind {
        "sync" => {
            let pool_id = ep
                .pool_id
                .as_deref()
                .ok_or_else(|| StoreError::conflict("unassigned", "the machine is in no pool"))?;
            let view = status::load_pool(conn, pool_id)?;
            let (row, _) = view
                .target
                .ok_or_else(|| StoreError::conflict("no_target", "the pool has no target yet"))?;
            row.target_hash
        }
        _ => revert_state(conn, endpoint_id)?.ok_or_else(|| {
            StoreError::conflict("nothing_to_revert", "no earlier state to go back to")
        })?,
    };
    let now = now_ms();
    let row = OperationRow {
        id: new_id(),
        endpoint_id: endpoint_id.to_owned(),
        kind: kind.to_owned(),
        status: "queued".into(),
        progress: 0,
        message: None,
        requested_by: actor.to_owned(),
        target_hash: Some(target_hash),
        from_state_hash: ep.state_hash.clone(),
        created_at: now,
        started_at: None,
        finished_at: None,
        updated_at: now,
    };
    diesel::insert_into(operations::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => in_progress(),
            other => other,
        })?;
    status::recompute_endpoint(conn, endpoint_id)?;
    audit::record(
        conn,
        actor,
        &format!("endpoint.{kind}"),
        endpoint_id,
        json!({ "operation": row.id }),
    )?;
    // A machine that asked for its own operation is already running it.
    if actor != format!("machine:{endpoint_id}") {
        events::emit(
            Scope::Endpoint(endpoint_id.to_owned()),
            json!({ "type": "operation_requested", "operation": operation_json(&row) }),
        );
    }
    announce(&row);
    Ok(row)
}

/// Set-latest: the machine's current state, minus the pool's exclusions,
/// becomes the pool's new target. Recorded as an operation that is done
/// as soon as it is made.
pub fn set_latest(
    conn: &mut DbConnection,
    endpoint_id: &str,
    expected: Expected,
    comment: String,
    actor: &str,
    analysis: bool,
) -> StoreResult<PoolTargetRow> {
    let ep: EndpointRow = eps::get(conn, endpoint_id)?;
    let pool_id = ep
        .pool_id
        .clone()
        .ok_or_else(|| StoreError::conflict("unassigned", "the machine is in no pool"))?;
    let state_hash = ep.state_hash.clone().ok_or_else(|| {
        StoreError::conflict("no_state", "the machine has not reported a state yet")
    })?;
    if active_for(conn, endpoint_id)?.is_some() {
        return Err(in_progress());
    }
    let pool = pools::get(conn, &pool_id)?;
    let patterns = status::patterns_of(&pool)?;
    let state = content::get_state(conn, &state_hash)?;
    let target = TargetState::from_state(&state, &patterns);
    let target_hash = content::put_target(conn, &target)?;
    let row = pools::set_target(
        conn,
        &pool_id,
        expected,
        NewTarget {
            target_hash: target_hash.clone(),
            kind: "set_latest",
            created_by: actor.to_owned(),
            from_endpoint_id: Some(ep.id.clone()),
            from_endpoint_name: Some(ep.name.clone()),
            comment,
        },
        analysis,
    )?;
    let now = now_ms();
    let op = OperationRow {
        id: new_id(),
        endpoint_id: endpoint_id.to_owned(),
        kind: "set_latest".into(),
        status: "succeeded".into(),
        progress: 100,
        message: None,
        requested_by: actor.to_owned(),
        target_hash: Some(target_hash),
        from_state_hash: Some(state_hash),
        created_at: now,
        started_at: Some(now),
        finished_at: Some(now),
        updated_at: now,
    };
    diesel::insert_into(operations::table)
        .values(&op)
        .execute(conn)?;
    announce(&op);
    Ok(row)
}

pub fn list_for_endpoint(
    conn: &mut DbConnection,
    endpoint_id: &str,
    status: Option<&str>,
    offset: i64,
    limit: i64,
) -> StoreResult<(Vec<OperationRow>, i64)> {
    eps::get(conn, endpoint_id)?;
    let query = || {
        let mut q = operations::table
            .filter(operations::endpoint_id.eq(endpoint_id.to_owned()))
            .into_boxed();
        if let Some(s) = status {
            q = q.filter(operations::status.eq(s.to_owned()));
        }
        q
    };
    let total = query().count().get_result(conn)?;
    let rows = query()
        .order((operations::created_at.desc(), operations::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(OperationRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

pub fn list_for_pool(
    conn: &mut DbConnection,
    pool_id: &str,
    status: Option<&str>,
    offset: i64,
    limit: i64,
) -> StoreResult<(Vec<OperationRow>, i64)> {
    pools::get(conn, pool_id)?;
    let query = || {
        let members = endpoints::table
            .filter(endpoints::pool_id.eq(pool_id.to_owned()))
            .select(endpoints::id);
        let mut q = operations::table
            .filter(operations::endpoint_id.eq_any(members))
            .into_boxed();
        if let Some(s) = status {
            q = q.filter(operations::status.eq(s.to_owned()));
        }
        q
    };
    let total = query().count().get_result(conn)?;
    let rows = query()
        .order((operations::created_at.desc(), operations::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(OperationRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

fn finished(op: &OperationRow) -> StoreError {
    if op.status == "cancelled" {
        StoreError::conflict("operation_cancelled", "the operation was cancelled")
    } else {
        StoreError::conflict(
            "operation_finished",
            format!("the operation already {}", op.status),
        )
    }
}

/// Operation `id`, read with its machine's row locked ([`eps::lock`]):
/// a change to it and the status it gives the machine are then made from
/// what concurrent reports and changes committed — a progress report and a
/// cancel at once, for one, cannot both find it active.
fn get_locked(conn: &mut DbConnection, id: &str) -> StoreResult<OperationRow> {
    let op = get(conn, id)?;
    if eps::lock(conn, &op.endpoint_id)? {
        // Read again: it may have changed while the lock was awaited.
        return get(conn, id);
    }
    Ok(op)
}

pub fn cancel(conn: &mut DbConnection, id: &str, actor: &str) -> StoreResult<OperationRow> {
    let op = get_locked(conn, id)?;
    if !ACTIVE.contains(&op.status.as_str()) {
        return Err(finished(&op));
    }
    let now = now_ms();
    diesel::update(operations::table.find(id))
        .set((
            operations::status.eq("cancelled"),
            operations::finished_at.eq(now),
            operations::updated_at.eq(now),
        ))
        .execute(conn)?;
    status::recompute_endpoint(conn, &op.endpoint_id)?;
    audit::record(
        conn,
        actor,
        "operation.cancel",
        id,
        json!({ "endpoint": op.endpoint_id }),
    )?;
    let op = get(conn, id)?;
    events::emit(
        Scope::Endpoint(op.endpoint_id.clone()),
        json!({ "type": "operation_cancelled", "operation": operation_json(&op) }),
    );
    announce(&op);
    Ok(op)
}

/// A progress report from the machine running the operation.
#[derive(Debug, Clone)]
pub struct Progress {
    pub status: String,
    pub progress: i32,
    pub message: Option<String>,
}

pub fn report_progress(
    conn: &mut DbConnection,
    id: &str,
    p: Progress,
) -> StoreResult<OperationRow> {
    let op = get_locked(conn, id)?;
    if !ACTIVE.contains(&op.status.as_str()) {
        return Err(finished(&op));
    }
    let now = now_ms();
    let done = p.status != "running";
    diesel::update(operations::table.find(id))
        .set((
            operations::status.eq(&p.status),
            operations::progress.eq(if p.status == "succeeded" {
                100
            } else {
                p.progress
            }),
            operations::message.eq(&p.message),
            operations::started_at.eq(op.started_at.unwrap_or(now)),
            operations::finished_at.eq(done.then_some(now)),
            operations::updated_at.eq(now),
        ))
        .execute(conn)?;
    if done {
        let last_error = (p.status == "failed").then(|| {
            p.message
                .clone()
                .unwrap_or_else(|| format!("{} failed", op.kind))
        });
        diesel::update(endpoints::table.find(&op.endpoint_id))
            .set(endpoints::last_error.eq(last_error))
            .execute(conn)?;
        audit::record(
            conn,
            &format!("machine:{}", op.endpoint_id),
            &format!("operation.{}", p.status),
            id,
            json!({ "message": p.message }),
        )?;
    }
    status::recompute_endpoint(conn, &op.endpoint_id)?;
    let op = get(conn, id)?;
    announce(&op);
    Ok(op)
}
