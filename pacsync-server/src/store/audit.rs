//! The audit log: every change and who made it.

use diesel::prelude::*;
use serde_json::Value;

use super::models::AuditRow;
use super::schema::audit_log;
use super::{DbConnection, StoreResult, new_id, now_ms};

/// Records one change, in the caller's transaction so the entry exists
/// exactly when the change does.
pub fn record(
    conn: &mut DbConnection,
    actor: &str,
    action: &str,
    subject: &str,
    details: Value,
) -> StoreResult<()> {
    diesel::insert_into(audit_log::table)
        .values(AuditRow {
            id: new_id(),
            at: now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            details: details.to_string(),
        })
        .execute(conn)?;
    Ok(())
}

/// Newest first.
pub fn list(conn: &mut DbConnection, offset: i64, limit: i64) -> StoreResult<(Vec<AuditRow>, i64)> {
    let total = audit_log::table.count().get_result(conn)?;
    let rows = audit_log::table
        .order((audit_log::at.desc(), audit_log::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}
