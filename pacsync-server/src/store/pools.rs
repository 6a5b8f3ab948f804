//! Pools and their target history.

use diesel::prelude::*;
use serde_json::json;

use super::models::{PoolRow, PoolTargetRow};
use super::schema::{pool_targets, pools};
use super::{DbConnection, StoreError, StoreResult, audit, new_id, now_ms, status};
use crate::events::{self, Scope};
use pacsync_core::analysis::Overrides;

/// What a pool is made of, as created or replaced by a patch.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: String,
    pub description: String,
    pub keep_extras: bool,
    pub auto_sync: bool,
    pub offline_grace_secs: i64,
    pub exclusions: Vec<String>,
    pub overrides: Overrides,
}

fn name_taken(e: StoreError, name: &str) -> StoreError {
    match e {
        StoreError::Conflict { .. } => {
            StoreError::conflict("name_taken", format!("a pool named {name:?} exists"))
        }
        other => other,
    }
}

pub fn create(conn: &mut DbConnection, spec: PoolSpec, actor: &str) -> StoreResult<PoolRow> {
    let now = now_ms();
    let row = PoolRow {
        id: new_id(),
        name: spec.name.clone(),
        description: spec.description,
        keep_extras: spec.keep_extras,
        auto_sync: spec.auto_sync,
        offline_grace_secs: spec.offline_grace_secs,
        exclusions: serde_json::to_string(&spec.exclusions).map_err(anyhow::Error::from)?,
        current_target_id: None,
        target_seq: 0,
        created_at: now,
        updated_at: now,
        repo_overrides: serde_json::to_string(&spec.overrides).map_err(anyhow::Error::from)?,
        analysis_excluded: "[]".into(),
    };
    diesel::insert_into(pools::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| name_taken(e.into(), &spec.name))?;
    audit::record(
        conn,
        actor,
        "pool.create",
        &row.id,
        json!({ "name": row.name }),
    )?;
    Ok(row)
}

pub fn get(conn: &mut DbConnection, id: &str) -> StoreResult<PoolRow> {
    pools::table
        .find(id)
        .select(PoolRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("pool"))
}

pub fn list(conn: &mut DbConnection, offset: i64, limit: i64) -> StoreResult<(Vec<PoolRow>, i64)> {
    let total = pools::table.count().get_result(conn)?;
    let rows = pools::table
        .order((pools::name.asc(), pools::id.asc()))
        .offset(offset)
        .limit(limit)
        .select(PoolRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// Replaces a pool's settings; members' statuses follow a policy change.
pub fn update(
    conn: &mut DbConnection,
    id: &str,
    spec: PoolSpec,
    actor: &str,
    analysis: bool,
) -> StoreResult<PoolRow> {
    let before = get(conn, id)?;
    let exclusions = serde_json::to_string(&spec.exclusions).map_err(anyhow::Error::from)?;
    let overrides = serde_json::to_string(&spec.overrides).map_err(anyhow::Error::from)?;
    diesel::update(pools::table.find(id))
        .set((
            pools::name.eq(&spec.name),
            pools::description.eq(&spec.description),
            pools::keep_extras.eq(spec.keep_extras),
            pools::auto_sync.eq(spec.auto_sync),
            pools::offline_grace_secs.eq(spec.offline_grace_secs),
            pools::exclusions.eq(&exclusions),
            pools::repo_overrides.eq(&overrides),
            pools::updated_at.eq(now_ms()),
        ))
        .execute(conn)
        .map_err(|e| name_taken(e.into(), &spec.name))?;
    let analysis_moved =
        analysis && before.repo_overrides != overrides && super::repos::refresh_pool(conn, id)?;
    if before.keep_extras != spec.keep_extras
        || before.exclusions != exclusions
        || before.offline_grace_secs != spec.offline_grace_secs
        || analysis_moved
    {
        status::recompute_pool(conn, id)?;
    }
    if before.keep_extras != spec.keep_extras || before.exclusions != exclusions || analysis_moved {
        announce_policy(id);
    }
    audit::record(conn, actor, "pool.update", id, json!({ "name": spec.name }))?;
    get(conn, id)
}

/// Tells a pool's machines that its policy changed.
pub fn announce_policy(pool_id: &str) {
    events::emit(
        Scope::Pool(pool_id.to_owned()),
        json!({ "type": "policy_changed", "pool_id": pool_id }),
    );
}

/// Tells a machine that it moved to another pool (or none): its target
/// is now another one.
pub fn announce_moved(endpoint_id: &str, pool_id: Option<&str>) {
    events::emit(
        Scope::Endpoint(endpoint_id.to_owned()),
        json!({ "type": "target_changed", "reason": "pool_changed", "endpoint_id": endpoint_id, "pool_id": pool_id }),
    );
}

/// Deletes a pool; its machines become unassigned, its targets go.
pub fn delete(conn: &mut DbConnection, id: &str, actor: &str) -> StoreResult<()> {
    let pool = get(conn, id)?;
    let members: Vec<String> = super::schema::endpoints::table
        .filter(super::schema::endpoints::pool_id.eq(id))
        .select(super::schema::endpoints::id)
        .load(conn)?;
    diesel::delete(pools::table.find(id)).execute(conn)?;
    for ep in members {
        status::recompute_endpoint(conn, &ep)?;
        announce_moved(&ep, None);
    }
    audit::record(conn, actor, "pool.delete", id, json!({ "name": pool.name }))?;
    Ok(())
}

/// A pool's targets, newest first.
pub fn targets(
    conn: &mut DbConnection,
    pool_id: &str,
    offset: i64,
    limit: i64,
) -> StoreResult<(Vec<PoolTargetRow>, i64)> {
    get(conn, pool_id)?;
    let total = pool_targets::table
        .filter(pool_targets::pool_id.eq(pool_id))
        .count()
        .get_result(conn)?;
    let rows = pool_targets::table
        .filter(pool_targets::pool_id.eq(pool_id))
        .order(pool_targets::seq.desc())
        .offset(offset)
        .limit(limit)
        .select(PoolTargetRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

pub fn target(
    conn: &mut DbConnection,
    pool_id: &str,
    target_id: &str,
) -> StoreResult<PoolTargetRow> {
    pool_targets::table
        .filter(pool_targets::pool_id.eq(pool_id))
        .filter(pool_targets::id.eq(target_id))
        .select(PoolTargetRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("target"))
}

/// What the caller believes the pool's current target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Whatever it is when this transaction reads it.
    Current,
    /// Exactly this (`None`: no target yet).
    Target(Option<String>),
}

/// A new target for a pool, with where it came from.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub target_hash: String,
    pub kind: &'static str,
    pub created_by: String,
    pub from_endpoint_id: Option<String>,
    pub from_endpoint_name: Option<String>,
    pub comment: String,
}

/// Makes `new` the pool's target if the current one is still `expected`,
/// and tells the pool's machines (the push leaves at commit). Of two
/// callers expecting the same previous target exactly one wins; the
/// other gets `target_conflict`. The members' statuses are the caller's
/// to recompute once this committed, with
/// [`status::recompute_pool_in_steps`]: a pool of thousands hears of its
/// new target without waiting for them, and the single writer is not held
/// for all of them at once.
pub fn set_target(
    conn: &mut DbConnection,
    pool_id: &str,
    expected: Expected,
    new: NewTarget,
    analysis: bool,
) -> StoreResult<PoolTargetRow> {
    let pool = get(conn, pool_id)?;
    let expected = match expected {
        Expected::Current => pool.current_target_id.clone(),
        Expected::Target(t) => t,
    };
    let conflict = || {
        StoreError::conflict(
            "target_conflict",
            "the pool's target changed since you read it; reload and try again",
        )
    };
    if pool.current_target_id != expected {
        return Err(conflict());
    }
    let now = now_ms();
    let row = PoolTargetRow {
        id: new_id(),
        pool_id: pool_id.to_owned(),
        seq: pool.target_seq + 1,
        target_hash: new.target_hash,
        kind: new.kind.to_owned(),
        created_by: new.created_by.clone(),
        from_endpoint_id: new.from_endpoint_id,
        from_endpoint_name: new.from_endpoint_name,
        comment: new.comment,
        created_at: now,
    };
    // Compare-and-set on the pool row: on PostgreSQL the row lock makes a
    // concurrent writer wait and then match nothing; on SQLite writers are
    // serialized by BEGIN IMMEDIATE.
    let base = pools::table
        .filter(pools::id.eq(pool_id))
        .filter(pools::target_seq.eq(pool.target_seq));
    let swapped = match &expected {
        Some(t) => diesel::update(base.filter(pools::current_target_id.eq(t)))
            .set((
                pools::current_target_id.eq(&row.id),
                pools::target_seq.eq(row.seq),
                pools::updated_at.eq(now),
            ))
            .execute(conn)?,
        None => diesel::update(base.filter(pools::current_target_id.is_null()))
            .set((
                pools::current_target_id.eq(&row.id),
                pools::target_seq.eq(row.seq),
                pools::updated_at.eq(now),
            ))
            .execute(conn)?,
    };
    if swapped != 1 {
        return Err(conflict());
    }
    diesel::insert_into(pool_targets::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => conflict(),
            other => other,
        })?;
    // The analysis runs over the target, so it goes first: the statuses
    // are then computed once, with the new target's exclusions.
    if analysis && super::repos::refresh_pool(conn, pool_id)? {
        announce_policy(pool_id);
    }
    events::emit(
        Scope::Pool(pool_id.to_owned()),
        json!({
            "type": "target_changed",
            "reason": row.kind,
            "pool_id": pool_id,
            "target": {
                "id": row.id,
                "seq": row.seq,
                "hash": row.target_hash,
                "kind": row.kind,
                "created_by": row.created_by,
                "from_endpoint_id": row.from_endpoint_id,
                "from_endpoint_name": row.from_endpoint_name,
                "comment": row.comment,
            },
        }),
    );
    audit::record(
        conn,
        &new.created_by,
        &format!("pool.{}", row.kind),
        pool_id,
        json!({ "target": row.id, "hash": row.target_hash, "previous": expected, "seq": row.seq }),
    )?;
    Ok(row)
}
