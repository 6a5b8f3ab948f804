//! The archive's rows: which package file (name, version, arch) has which
//! content, and which files the pools' targets still reference.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use diesel::prelude::*;
use pacsync_core::state::TargetState;

use crate::store::schema::{archive_files, endpoint_states, operations, pool_targets, pools};
use crate::store::{DbConnection, StoreError, StoreResult, content};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = archive_files)]
pub struct ArchiveFileRow {
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub arch: String,
    pub filename: String,
    pub size: i64,
    pub pkginfo: String,
    pub signature: Option<Vec<u8>>,
    pub source: String,
    pub created_at: i64,
    pub damaged_at: Option<i64>,
}

/// Records a file unless its content is already recorded; returns whether
/// it was new.
pub fn insert(conn: &mut DbConnection, row: &ArchiveFileRow) -> StoreResult<bool> {
    let exists = archive_files::table
        .find(&row.sha256)
        .select(archive_files::sha256)
        .first::<String>(conn)
        .optional()?
        .is_some();
    if exists {
        // A fresh copy of a damaged file repairs it.
        diesel::update(archive_files::table.find(&row.sha256))
            .set(archive_files::damaged_at.eq(None::<i64>))
            .execute(conn)?;
        if row.signature.is_some() {
            diesel::update(archive_files::table.find(&row.sha256))
                .set(archive_files::signature.eq(&row.signature))
                .execute(conn)?;
        }
        return Ok(false);
    }
    diesel::insert_into(archive_files::table)
        .values(row)
        .execute(conn)?;
    Ok(true)
}

pub fn get(conn: &mut DbConnection, sha256: &str) -> StoreResult<Option<ArchiveFileRow>> {
    Ok(archive_files::table
        .find(sha256)
        .select(ArchiveFileRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn all(conn: &mut DbConnection) -> StoreResult<Vec<ArchiveFileRow>> {
    Ok(archive_files::table
        .order(archive_files::sha256)
        .select(ArchiveFileRow::as_select())
        .load(conn)?)
}

pub fn mark_damaged(conn: &mut DbConnection, sha256: &str, at: Option<i64>) -> StoreResult<()> {
    diesel::update(archive_files::table.find(sha256))
        .set(archive_files::damaged_at.eq(at))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut DbConnection, sha256: &str) -> StoreResult<()> {
    diesel::delete(archive_files::table.find(sha256)).execute(conn)?;
    Ok(())
}

/// The file of every package of `target`, `None` where the archive has
/// none.
pub fn files_of(
    conn: &mut DbConnection,
    target: &TargetState,
) -> StoreResult<Vec<(String, String, Option<ArchiveFileRow>)>> {
    let wanted: Vec<(String, String)> = target
        .iter()
        .map(|(n, e)| (n.to_owned(), e.version.as_str().to_owned()))
        .collect();
    files_for(conn, &wanted)
}

/// The file of each (name, version) asked for, `None` where the archive
/// has none; an undamaged file wins over a damaged one.
pub fn files_for(
    conn: &mut DbConnection,
    wanted: &[(String, String)],
) -> StoreResult<Vec<(String, String, Option<ArchiveFileRow>)>> {
    let mut found: BTreeMap<(String, String), ArchiveFileRow> = BTreeMap::new();
    let names: Vec<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
    let keys: HashSet<(&str, &str)> = wanted
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    // Bounded IN lists: SQLite caps the number of bound parameters.
    for chunk in names.chunks(500) {
        let rows: Vec<ArchiveFileRow> = archive_files::table
            .filter(archive_files::name.eq_any(chunk))
            .select(ArchiveFileRow::as_select())
            .load(conn)?;
        for row in rows {
            if !keys.contains(&(row.name.as_str(), row.version.as_str())) {
                continue;
            }
            let key = (row.name.clone(), row.version.clone());
            let better = found
                .get(&key)
                .is_none_or(|old| old.damaged_at.is_some() && row.damaged_at.is_none());
            if better {
                found.insert(key, row);
            }
        }
    }
    Ok(wanted
        .iter()
        .map(|key| {
            let row = found.remove(key);
            (key.0.clone(), key.1.clone(), row)
        })
        .collect())
}

/// A pool's target by id, or its current one for `current`.
pub fn pool_target(
    conn: &mut DbConnection,
    pool_id: &str,
    target: &str,
) -> StoreResult<(String, Arc<TargetState>)> {
    let target_id = if target == "current" {
        pools::table
            .find(pool_id)
            .select(pools::current_target_id)
            .first::<Option<String>>(conn)
            .optional()?
            .ok_or(StoreError::NotFound("pool"))?
            .ok_or_else(|| StoreError::conflict("no_target", "the pool has no target yet"))?
    } else {
        target.to_owned()
    };
    let hash: String = pool_targets::table
        .filter(pool_targets::pool_id.eq(pool_id))
        .filter(pool_targets::id.eq(&target_id))
        .select(pool_targets::target_hash)
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("target"))?;
    Ok((target_id, content::get_target(conn, &hash)?))
}

/// Every (name, version) that a target in any pool's history, a machine's
/// retained state history (what a revert goes back to) or an active
/// operation references: what garbage collection keeps.
pub fn referenced(conn: &mut DbConnection) -> StoreResult<HashSet<(String, String)>> {
    let mut targets: Vec<String> = pool_targets::table
        .select(pool_targets::target_hash)
        .distinct()
        .load(conn)?;
    let mut states: Vec<String> = endpoint_states::table
        .select(endpoint_states::state_hash)
        .distinct()
        .load(conn)?;
    // An active operation's target is a stored target (sync) or a
    // machine's earlier state (revert).
    let active: Vec<Option<String>> = operations::table
        .filter(operations::status.eq_any(crate::store::operations::ACTIVE))
        .select(operations::target_hash)
        .load(conn)?;
    for hash in active.into_iter().flatten() {
        targets.push(hash.clone());
        states.push(hash);
    }
    targets.sort();
    targets.dedup();
    states.sort();
    states.dedup();
    let mut out = HashSet::new();
    for hash in targets {
        match content::get_target(conn, &hash) {
            Ok(target) => out.extend(
                target
                    .iter()
                    .map(|(n, e)| (n.to_owned(), e.version.as_str().to_owned())),
            ),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for hash in states {
        match content::get_state(conn, &hash) {
            Ok(state) => out.extend(
                state
                    .iter()
                    .map(|p| (p.name.clone(), p.version.as_str().to_owned())),
            ),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A target by its id, whichever pool it belongs to: pool id and content.
pub fn target_by_id(
    conn: &mut DbConnection,
    target_id: &str,
) -> StoreResult<(String, Arc<TargetState>)> {
    let (pool_id, hash): (String, String) = pool_targets::table
        .filter(pool_targets::id.eq(target_id))
        .select((pool_targets::pool_id, pool_targets::target_hash))
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("target"))?;
    Ok((pool_id, content::get_target(conn, &hash)?))
}

/// Every pool with the ids of its targets, oldest first.
pub fn pools_and_targets(
    conn: &mut DbConnection,
) -> StoreResult<Vec<(String, String, Vec<String>)>> {
    let pools: Vec<(String, String)> = pools::table
        .select((pools::id, pools::name))
        .order(pools::name)
        .load(conn)?;
    let mut out = Vec::new();
    for (id, name) in pools {
        let targets: Vec<String> = pool_targets::table
            .filter(pool_targets::pool_id.eq(&id))
            .order(pool_targets::seq)
            .select(pool_targets::id)
            .load(conn)?;
        out.push((id, name, targets));
    }
    Ok(out)
}
