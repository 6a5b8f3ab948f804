//! The UI's two logs across the whole server, filterable: operations of
//! every machine (the API lists them per machine and per pool) and the
//! audit log by actor, action or subject.

use axum::extract::State;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, AppState, Json, PageQuery, Query, page_json, rfc3339};
use crate::auth::{Principal, Role};
use crate::store::models::{AuditRow, OperationRow};
use crate::store::operations::{STATUSES, operation_json};
use crate::store::schema::{audit_log, endpoints, operations};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationsQuery {
    status: Option<String>,
    kind: Option<String>,
    /// Part of the machine's name.
    machine: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
}

/// `text` as a LIKE pattern matching any value containing it.
fn contains(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `GET /ui/data/operations`: newest first, with the machine's name.
pub async fn operations(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<OperationsQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let (page, per_page, offset) = PageQuery::resolve(q.page, q.per_page)?;
    let status = nonempty(q.status);
    if status.as_deref().is_some_and(|s| !STATUSES.contains(&s)) {
        return Err(ApiError::bad_request("invalid_query", "unknown status"));
    }
    let kind = nonempty(q.kind);
    let machine = nonempty(q.machine).map(|m| contains(&m));
    let (rows, total) = app
        .store
        .run(move |conn| {
            let query = || {
                let mut q = operations::table.inner_join(endpoints::table).into_boxed();
                if let Some(s) = &status {
                    q = q.filter(operations::status.eq(s.clone()));
                }
                if let Some(k) = &kind {
                    q = q.filter(operations::kind.eq(k.clone()));
                }
                if let Some(m) = &machine {
                    q = q.filter(endpoints::name.like(m.clone()).escape('\\'));
                }
                q
            };
            let total: i64 = query().count().get_result(conn)?;
            let rows: Vec<(OperationRow, String)> = query()
                .order((operations::created_at.desc(), operations::id.desc()))
                .offset(offset)
                .limit(per_page)
                .select((OperationRow::as_select(), endpoints::name))
                .load(conn)?;
            Ok((rows, total))
        })
        .await?;
    let items = rows
        .iter()
        .map(|(op, name)| {
            let mut v = operation_json(op);
            v["endpoint_name"] = json!(name);
            v
        })
        .collect();
    Ok(Json(page_json(items, page, per_page, total)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    subject: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
}

/// `GET /ui/data/audit` (admins): newest first, each filter a substring.
pub async fn audit(
    State(app): State<AppState>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Admin)?;
    let (page, per_page, offset) = PageQuery::resolve(q.page, q.per_page)?;
    let actor = nonempty(q.actor).map(|s| contains(&s));
    let action = nonempty(q.action).map(|s| contains(&s));
    let subject = nonempty(q.subject).map(|s| contains(&s));
    let (rows, total) = app
        .store
        .run(move |conn| {
            let query = || {
                let mut q = audit_log::table.into_boxed();
                if let Some(a) = &actor {
                    q = q.filter(audit_log::actor.like(a.clone()).escape('\\'));
                }
                if let Some(a) = &action {
                    q = q.filter(audit_log::action.like(a.clone()).escape('\\'));
                }
                if let Some(s) = &subject {
                    q = q.filter(audit_log::subject.like(s.clone()).escape('\\'));
                }
                q
            };
            let total: i64 = query().count().get_result(conn)?;
            let rows: Vec<AuditRow> = query()
                .order((audit_log::at.desc(), audit_log::id.desc()))
                .offset(offset)
                .limit(per_page)
                .select(AuditRow::as_select())
                .load(conn)?;
            Ok((rows, total))
        })
        .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "at": rfc3339(r.at),
                "actor": r.actor,
                "action": r.action,
                "subject": r.subject,
                "details": serde_json::from_str::<Value>(&r.details).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(page_json(items, page, per_page, total)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(super::contains("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
