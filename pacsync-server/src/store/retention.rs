//! Cleanup of old state history (`AUTO_CLEANUP_OLD_STATES`).
//!
//! History rows older than the cutoff go, except the one recording each
//! machine's current state. Contents (states, target contents,
//! repositories) go when older than the cutoff and nothing that may still
//! need them points at them: a machine's current state, a remaining history
//! row, a revert point (the state before a machine's last operations — see
//! [`REVERT_POINTS`]), an active operation, a pool target, or a state
//! compressed against it ([`super::bases`]). The age guard
//! also keeps a content just uploaded by a report whose transaction has not
//! recorded it yet.
//!
//! The statements are plain SQL both backends accept; the cutoff is an
//! integer we compute, formatted in, so no placeholder syntax differs.

use diesel::prelude::*;

use super::{DbConnection, StoreResult};

/// What one cleanup removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub history: usize,
    pub states: usize,
    pub targets: usize,
    pub repositories: usize,
}

/// `from_state_hash` of every operation not followed by a successful sync
/// or revert of the same machine: the state a revert goes back to, and the
/// states before anything it did since.
const REVERT_POINTS: &str = "SELECT o.from_state_hash FROM operations o \
    WHERE o.from_state_hash IS NOT NULL AND NOT EXISTS (\
      SELECT 1 FROM operations l WHERE l.endpoint_id = o.endpoint_id \
      AND l.status = 'succeeded' AND l.kind IN ('sync', 'revert') \
      AND l.finished_at > COALESCE(o.finished_at, o.created_at))";

/// Removes what is older than `cutoff_ms` and unneeded.
pub fn cleanup(conn: &mut DbConnection, cutoff_ms: i64) -> StoreResult<Cleaned> {
    let history = diesel::sql_query(format!(
        "DELETE FROM endpoint_states WHERE reported_at < {cutoff_ms} AND NOT EXISTS (\
           SELECT 1 FROM endpoints e WHERE e.id = endpoint_states.endpoint_id \
           AND e.state_hash = endpoint_states.state_hash)"
    ))
    .execute(conn)?;
    let states = diesel::sql_query(format!(
        "DELETE FROM states WHERE created_at < {cutoff_ms} \
         AND hash NOT IN (SELECT state_hash FROM endpoints WHERE state_hash IS NOT NULL) \
         AND hash NOT IN (SELECT state_hash FROM endpoint_states) \
         AND hash NOT IN ({REVERT_POINTS}) \
         AND hash NOT IN (SELECT target_hash FROM operations \
             WHERE status IN ('queued', 'running') AND target_hash IS NOT NULL) \
         AND NOT EXISTS (SELECT 1 FROM states d WHERE d.base = states.hash)"
    ))
    .execute(conn)?;
    let targets = diesel::sql_query(format!(
        "DELETE FROM target_contents WHERE created_at < {cutoff_ms} \
         AND hash NOT IN (SELECT target_hash FROM pool_targets) \
         AND hash NOT IN (SELECT target_hash FROM operations \
             WHERE status IN ('queued', 'running') AND target_hash IS NOT NULL)"
    ))
    .execute(conn)?;
    let repositories = diesel::sql_query(format!(
        "DELETE FROM repo_contents WHERE created_at < {cutoff_ms} \
         AND hash NOT IN (SELECT repo_hash FROM endpoint_repos)"
    ))
    .execute(conn)?;
    Ok(Cleaned {
        history,
        states,
        targets,
        repositories,
    })
}
