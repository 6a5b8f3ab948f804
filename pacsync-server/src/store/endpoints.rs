//! Machines: enrollment, listing, pool assignment and state reports.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use serde_json::json;

use super::changes::Touched;
use super::content::PreparedState;
use super::models::{EndpointRow, EndpointStateRow};
use super::schema::{endpoint_states, endpoints, pools};
use super::{
    DbConnection, StoreError, StoreResult, audit, credentials, holds, new_id, now_ms, status,
};
use crate::events::{self, Event};

pub fn get(conn: &mut DbConnection, id: &str) -> StoreResult<EndpointRow> {
    endpoints::table
        .find(id)
        .select(EndpointRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("endpoint"))
}

/// Locks machine `id`'s row, if there is one, until the transaction ends
/// on PostgreSQL (`SELECT … FOR NO KEY UPDATE`, the lock an `UPDATE` of
/// the row takes, so rows that refer to it can still be inserted); SQLite's
/// writers are serialized already. Says whether this is PostgreSQL.
///
/// A change to a machine's operations takes it first, before reading
/// anything, as a report takes it before writing the row:
/// whichever comes second then reads what the other committed, and the
/// status it computes and stores is the machine's as it is, not one worked
/// out from a row another transaction has since changed. (The pool's share
/// lock a report takes before the machine's row is not taken by these, so
/// the order of locks stays the same everywhere.)
pub fn lock(conn: &mut DbConnection, id: &str) -> StoreResult<bool> {
    let DbConnection::Pg(pg) = conn else {
        return Ok(false);
    };
    endpoints::table
        .find(id)
        .select(endpoints::id)
        .for_no_key_update()
        .first::<String>(pg)
        .optional()?;
    Ok(true)
}

/// A machine and the name of its pool, as the API shows it.
pub type NamedEndpoint = (EndpointRow, Option<String>);

pub fn get_named(conn: &mut DbConnection, id: &str) -> StoreResult<NamedEndpoint> {
    endpoints::table
        .left_join(pools::table)
        .filter(endpoints::id.eq(id))
        .select((EndpointRow::as_select(), pools::name.nullable()))
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("endpoint"))
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub pool_id: Option<String>,
    pub status: Option<String>,
}

/// A page of the list and the list's total.
pub fn list(
    conn: &mut DbConnection,
    filter: &ListFilter,
    offset: i64,
    limit: i64,
) -> StoreResult<(Vec<NamedEndpoint>, i64)> {
    let total = count(conn, filter)?;
    Ok((page(conn, filter, offset, limit)?, total))
}

/// How many machines the list shows. The count needs no join.
pub fn count(conn: &mut DbConnection, filter: &ListFilter) -> StoreResult<i64> {
    let mut count = endpoints::table.into_boxed();
    if let Some(p) = &filter.pool_id {
        count = count.filter(endpoints::pool_id.eq(p.clone()));
    }
    if let Some(s) = &filter.status {
        count = count.filter(endpoints::status.eq(s.clone()));
    }
    Ok(count.count().get_result(conn)?)
}

/// A page of the list, by name.
pub fn page(
    conn: &mut DbConnection,
    filter: &ListFilter,
    offset: i64,
    limit: i64,
) -> StoreResult<Vec<NamedEndpoint>> {
    // The page's ids first: unfiltered, an index-only walk of
    // endpoints_name, so a deep page skips index entries rather than rows;
    // then those rows, with their pool's name.
    let mut ids = endpoints::table.into_boxed();
    if let Some(p) = &filter.pool_id {
        ids = ids.filter(endpoints::pool_id.eq(p.clone()));
    }
    if let Some(s) = &filter.status {
        ids = ids.filter(endpoints::status.eq(s.clone()));
    }
    let ids: Vec<String> = ids
        .order((endpoints::name.asc(), endpoints::id.asc()))
        .offset(offset)
        .limit(limit)
        .select(endpoints::id)
        .load(conn)?;
    let mut rows: Vec<NamedEndpoint> = endpoints::table
        .left_join(pools::table)
        .filter(endpoints::id.eq_any(&ids))
        .select((EndpointRow::as_select(), pools::name.nullable()))
        .load(conn)?;
    let position: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    rows.sort_by_key(|(e, _)| position.get(e.id.as_str()).copied().unwrap_or(usize::MAX));
    Ok(rows)
}

/// A machine enrolled with an enrollment token, and its first refresh token.
#[derive(Debug)]
pub struct Registered {
    pub endpoint: EndpointRow,
    pub pool_name: Option<String>,
    pub refresh_token: String,
}

pub fn register(
    conn: &mut DbConnection,
    enrollment_token: &str,
    name: &str,
) -> StoreResult<Registered> {
    let token = credentials::consume_enrollment(conn, enrollment_token)?;
    let now = now_ms();
    let row = EndpointRow {
        id: new_id(),
        name: name.to_owned(),
        pool_id: token.pool_id.clone(),
        state_hash: None,
        status: "unassigned".into(),
        last_error: None,
        last_seen_at: Some(now),
        state_changed_at: None,
        session_gen: 0,
        created_at: now,
        updated_at: now,
    };
    diesel::insert_into(endpoints::table)
        .values(&row)
        .execute(conn)?;
    status::recompute_endpoint(conn, &row.id)?;
    let refresh_token = credentials::issue_refresh(conn, &row.id)?;
    audit::record(
        conn,
        &format!("enrollment:{}", token.id),
        "endpoint.register",
        &row.id,
        json!({ "name": name, "pool": token.pool_id }),
    )?;
    let (endpoint, pool_name) = get_named(conn, &row.id)?;
    Ok(Registered {
        endpoint,
        pool_name,
        refresh_token,
    })
}

/// A change of name and/or pool; `pool_id: Some(None)` unassigns.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub name: Option<String>,
    pub pool_id: Option<Option<String>>,
}

pub fn update(
    conn: &mut DbConnection,
    id: &str,
    patch: EndpointPatch,
    actor: &str,
    analysis: bool,
) -> StoreResult<NamedEndpoint> {
    let ep = get(conn, id)?;
    if let Some(Some(pool)) = &patch.pool_id {
        let n: i64 = pools::table
            .filter(pools::id.eq(pool))
            .count()
            .get_result(conn)?;
        if n == 0 {
            return Err(StoreError::invalid(
                "unknown_pool",
                format!("no pool with id {pool:?}"),
            ));
        }
    }
    let name = patch.name.clone().unwrap_or(ep.name.clone());
    let moved = patch.pool_id.as_ref().is_some_and(|p| *p != ep.pool_id);
    let pool_id = patch.pool_id.clone().unwrap_or(ep.pool_id.clone());
    diesel::update(endpoints::table.find(id))
        .set((
            endpoints::name.eq(&name),
            endpoints::pool_id.eq(&pool_id),
            endpoints::updated_at.eq(now_ms()),
        ))
        .execute(conn)?;
    status::recompute_endpoint(conn, id)?;
    if moved {
        super::pools::announce_moved(id, pool_id.as_deref());
        // A member's repositories count in its pool's analysis.
        if analysis {
            for p in [ep.pool_id.as_deref(), pool_id.as_deref()]
                .into_iter()
                .flatten()
            {
                super::repos::after_change(conn, p)?;
            }
        }
    }
    audit::record(
        conn,
        actor,
        "endpoint.update",
        id,
        json!({ "name": name, "pool": pool_id }),
    )?;
    get_named(conn, id)
}

pub fn delete(conn: &mut DbConnection, id: &str, actor: &str, analysis: bool) -> StoreResult<()> {
    let ep = get(conn, id)?;
    diesel::delete(endpoints::table.find(id)).execute(conn)?;
    if analysis && let Some(p) = &ep.pool_id {
        super::repos::after_change(conn, p)?;
    }
    audit::record(
        conn,
        actor,
        "endpoint.delete",
        id,
        json!({ "name": ep.name }),
    )?;
    Ok(())
}

/// What a report's transaction knows of the reported state's content.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// Nothing: a new hash is looked up.
    Unchecked,
    /// The same transaction stored it just before: no lookup.
    Stored,
    /// It came with the report: stored unless it is there.
    New(&'a PreparedState),
}

/// An unchanged report in one statement: the machine's `last_seen_at`,
/// if its state is `hash` and it is not offline (a machine coming back
/// has its status computed again, by [`report_state`]). Whether it was;
/// if not, the report takes [`report_state`]'s way. For
/// [`super::Store::write_statement`].
pub fn touch_unchanged(conn: &mut DbConnection, id: &str, hash: &str) -> StoreResult<bool> {
    let n = diesel::update(
        endpoints::table
            .find(id)
            .filter(endpoints::state_hash.eq(hash))
            .filter(endpoints::status.ne("offline")),
    )
    .set(endpoints::last_seen_at.eq(now_ms()))
    .execute(conn)?;
    Ok(n > 0)
}

/// Records that a machine reports state `hash`. An unchanged state costs
/// one row update and no new rows, and changes nothing but `last_seen_at`
/// ([`Touched::Nothing`]); what else it changed the answer says.
///
/// A changed state reads the machine's row, then (on PostgreSQL) its pool
/// with a share lock, the pool's target and whether an operation runs, in
/// one statement: the lock keeps a concurrent set-latest (which updates the
/// pool row, then its members) from slipping between the report reading
/// the target and storing the status it computed from it, and it is taken
/// before the machine's row is written, in set-latest's order. The status
/// is computed from the row as the report leaves it and written with it.
///
/// On PostgreSQL one more statement does the rest of a changed report: the
/// content stored (when it came with the report), the machine's row
/// written, its history row, and the transaction's notifications — each
/// round trip a report makes is one more wait for a busy CPU, by the
/// server and by the database, with the machine's row locked.
pub fn report_state(
    conn: &mut DbConnection,
    id: &str,
    hash: &str,
    content: Content<'_>,
) -> StoreResult<Touched> {
    let ep = get(conn, id)?;
    let now = now_ms();
    let changed = ep.state_hash.as_deref() != Some(hash);
    let on_pg = matches!(conn, DbConnection::Pg(_));
    let upload = match content {
        Content::New(p) if changed && on_pg => Some(p),
        Content::New(p) => {
            super::content::insert_state(conn, p)?;
            None
        }
        _ => None,
    };
    // A new hash must name a content the server has; checked here, inside
    // the transaction, so a hash-only report costs one trip to the database
    // and retention cannot remove the content in between.
    if changed && matches!(content, Content::Unchecked) && !super::content::has_state(conn, hash)? {
        return Err(StoreError::conflict(
            "state_content_required",
            "the server does not have this state; send it again with its packages",
        ));
    }
    if !changed && ep.status != "offline" {
        diesel::update(endpoints::table.find(id))
            .set(endpoints::last_seen_at.eq(now))
            .execute(conn)?;
        return Ok(Touched::Nothing);
    }
    let (view, running) = match &ep.pool_id {
        Some(p) => {
            let (view, running) = status::load_pool_for_report(conn, p, id)?;
            (Some(view), running)
        }
        None => (None, status::has_active_operation(conn, id)?),
    };
    let mut after = ep.clone();
    after.last_seen_at = Some(now);
    if changed {
        after.state_hash = Some(hash.to_owned());
        after.state_changed_at = Some(now);
        after.updated_at = now;
    }
    let status = status::compute_knowing(conn, &after, view.as_ref(), running)?.as_str();
    // The status goes in with the report while what it was computed from
    // is still so: the status read (which an operation starting or ending
    // changes), the pool and the last error. Otherwise, rarely, it is
    // computed again from the row as written.
    let (pool, error) = (ep.pool_id.as_deref(), ep.last_error.as_deref());
    let guard = Guard {
        status: &ep.status,
        pool,
        error,
    };
    let announced =
        (ep.status != status).then(|| status::status_event(id, pool, &ep.status, status));
    let written = match conn {
        DbConnection::Pg(pg) if changed => {
            if write_changed_pg(
                pg,
                id,
                hash,
                now,
                status,
                &guard,
                upload,
                announced.as_slice(),
            )? {
                // That statement carried the history row and every
                // notification so far, the status change last.
                if let Some(e) = announced {
                    events::emit(e.scope, e.message);
                }
                super::pg_notices_sent(Touched::Listed);
                return Ok(Touched::Listed);
            }
            false
        }
        _ => {
            let target = endpoints::table
                .find(id)
                .filter(endpoints::status.eq(guard.status))
                .filter(holds!(endpoints::pool_id, pool))
                .filter(holds!(endpoints::last_error, error));
            let n = if changed {
                diesel::update(target)
                    .set((
                        endpoints::state_hash.eq(hash),
                        endpoints::state_changed_at.eq(now),
                        endpoints::last_seen_at.eq(now),
                        endpoints::updated_at.eq(now),
                        endpoints::status.eq(status),
                    ))
                    .execute(conn)?
            } else {
                diesel::update(target)
                    .set((
                        endpoints::last_seen_at.eq(now),
                        endpoints::status.eq(status),
                    ))
                    .execute(conn)?
            };
            n > 0
        }
    };
    if !written {
        write_report(conn, id, hash, changed, now)?;
        status::recompute_endpoint(conn, id)?;
    } else if let Some(e) = announced {
        events::emit(e.scope, e.message);
    }
    if changed {
        diesel::insert_into(endpoint_states::table)
            .values(EndpointStateRow {
                id: new_id(),
                endpoint_id: id.to_owned(),
                state_hash: hash.to_owned(),
                reported_at: now,
            })
            .execute(conn)?;
    }
    Ok(Touched::Listed)
}

/// What a report's conditional write expects the machine's row to hold
/// still: what its status was computed from.
struct Guard<'a> {
    status: &'a str,
    pool: Option<&'a str>,
    error: Option<&'a str>,
}

/// A changed report's writes on PostgreSQL, in one statement: the content
/// (`upload`, stored unless it is there), and, if the row still holds what
/// `guard` says, the machine's row with its `status`, the state's history
/// row and the transaction's notifications ([`super::pg_notices`]),
/// `announced` last. Whether the row was written; if it was, the caller
/// emits `announced` and records the notifications as sent; if not,
/// nothing but the content was, and the notifications are left to the
/// commit.
#[allow(clippy::too_many_arguments)]
fn write_changed_pg(
    pg: &mut diesel::PgConnection,
    id: &str,
    hash: &str,
    now: i64,
    status: &str,
    guard: &Guard<'_>,
    upload: Option<&PreparedState>,
    announced: &[Event],
) -> StoreResult<bool> {
    use diesel::sql_types::{Array, Binary};
    #[derive(QueryableByName)]
    struct Written {
        #[diesel(sql_type = BigInt)]
        written: i64,
        #[diesel(sql_type = BigInt)]
        notified: i64,
        #[diesel(sql_type = BigInt)]
        inserted: i64,
    }
    let (channels, payloads) = super::pg_notices(Touched::Listed, announced);
    let expected = payloads.len();
    // Every data-modifying part runs whether or not the main query reads
    // it; `n`, a plain query, runs because it is read.
    let row: Written = diesel::sql_query(
        "WITH s AS (INSERT INTO states (hash, package_count, content, created_at, base) \
         SELECT $1, $9, $10, $2, $13 WHERE $10::bytea IS NOT NULL ON CONFLICT DO NOTHING \
         RETURNING 1), \
         u AS (UPDATE endpoints SET state_hash = $1, state_changed_at = $2, \
         last_seen_at = $2, updated_at = $2, status = $3 \
         WHERE id = $4 AND status = $5 AND pool_id IS NOT DISTINCT FROM $6 \
         AND last_error IS NOT DISTINCT FROM $7 RETURNING id), \
         h AS (INSERT INTO endpoint_states (id, endpoint_id, state_hash, reported_at) \
         SELECT $8, id, $1, $2 FROM u RETURNING 1), \
         n AS (SELECT pg_notify(c, p) FROM unnest($11::text[], $12::text[]) AS t(c, p) \
         WHERE EXISTS (SELECT 1 FROM h)) \
         SELECT (SELECT count(*) FROM h) AS written, (SELECT count(*) FROM n) AS notified, \
         (SELECT count(*) FROM s) AS inserted",
    )
    .bind::<Text, _>(hash)
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(status)
    .bind::<Text, _>(id)
    .bind::<Text, _>(guard.status)
    .bind::<Nullable<Text>, _>(guard.pool)
    .bind::<Nullable<Text>, _>(guard.error)
    .bind::<Text, _>(new_id())
    .bind::<Nullable<BigInt>, _>(upload.map(PreparedState::package_count))
    .bind::<Nullable<Binary>, _>(upload.map(PreparedState::content))
    .bind::<Array<Text>, _>(channels)
    .bind::<Array<Text>, _>(payloads)
    .bind::<Nullable<Text>, _>(upload.and_then(PreparedState::base))
    .get_result(pg)?;
    if let Some(u) = upload.filter(|_| row.inserted > 0) {
        u.mark_inserted();
    }
    if row.written == 0 {
        return Ok(false);
    }
    debug_assert_eq!(usize::try_from(row.notified).ok(), Some(expected));
    Ok(true)
}

/// A report's change of the machine's row, status aside.
fn write_report(
    conn: &mut DbConnection,
    id: &str,
    hash: &str,
    changed: bool,
    now: i64,
) -> StoreResult<()> {
    if changed {
        diesel::update(endpoints::table.find(id))
            .set((
                endpoints::state_hash.eq(hash),
                endpoints::state_changed_at.eq(now),
                endpoints::last_seen_at.eq(now),
                endpoints::updated_at.eq(now),
            ))
            .execute(conn)?;
    } else {
        diesel::update(endpoints::table.find(id))
            .set(endpoints::last_seen_at.eq(now))
            .execute(conn)?;
    }
    Ok(())
}

/// A machine's state changes, newest first.
pub fn state_history(
    conn: &mut DbConnection,
    id: &str,
    offset: i64,
    limit: i64,
) -> StoreResult<(Vec<EndpointStateRow>, i64)> {
    get(conn, id)?;
    let total = endpoint_states::table
        .filter(endpoint_states::endpoint_id.eq(id))
        .count()
        .get_result(conn)?;
    let rows = endpoint_states::table
        .filter(endpoint_states::endpoint_id.eq(id))
        .order((
            endpoint_states::reported_at.desc(),
            endpoint_states::id.desc(),
        ))
        .offset(offset)
        .limit(limit)
        .select(EndpointStateRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}
