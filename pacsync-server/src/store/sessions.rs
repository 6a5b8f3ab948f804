//! Users' signed-in sessions. Every user access token names its session
//! (the `sid` claim); the token is good only while the row is there, so
//! logging out, a password reset or deleting the user ends it at once
//! rather than when the token expires.

use diesel::prelude::*;

use super::models::UserRow;
use super::schema::{sessions, users};
use super::{DbConnection, StoreResult, new_id, now_ms};

/// Opens a session of `user_id` lasting `ttl_secs`; returns its id.
pub fn create(conn: &mut DbConnection, user_id: &str, ttl_secs: i64) -> StoreResult<String> {
    let id = new_id();
    let now = now_ms();
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(&id),
            sessions::user_id.eq(user_id),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(now.saturating_add(ttl_secs.saturating_mul(1000))),
        ))
        .execute(conn)?;
    Ok(id)
}

/// The user of session `id` when the session is open and belongs to
/// `user_id`.
pub fn user(conn: &mut DbConnection, id: &str, user_id: &str) -> StoreResult<Option<UserRow>> {
    Ok(sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(id))
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(now_ms()))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// Ends one session; whether it was open.
pub fn end(conn: &mut DbConnection, id: &str) -> StoreResult<bool> {
    Ok(diesel::delete(sessions::table.find(id)).execute(conn)? > 0)
}

/// Ends every session of a user; how many there were.
pub fn end_all_of(conn: &mut DbConnection, user_id: &str) -> StoreResult<usize> {
    Ok(diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)?)
}

/// Forgets sessions that expired before `now_ms`.
pub fn prune(conn: &mut DbConnection, now_ms: i64) -> StoreResult<usize> {
    Ok(diesel::delete(sessions::table.filter(sessions::expires_at.le(now_ms))).execute(conn)?)
}
