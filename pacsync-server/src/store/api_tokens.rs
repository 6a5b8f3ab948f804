//! API tokens for automation: made by an admin with a role, shown once,
//! stored as a sha256, revocable, optionally expiring.

use diesel::prelude::*;
use serde_json::json;

use super::models::ApiTokenRow;
use super::schema::api_tokens;
use super::{DbConnection, StoreError, StoreResult, audit, new_id, now_ms};
use crate::auth::{self, Role};

/// The prefix that tells an API token from a signed access token.
pub const PREFIX: &str = "psa_";
/// How stale `last_used_at` may get before a use writes it again.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// Makes a token; returns its row and the token, which exists nowhere
/// else afterwards.
pub fn create(
    conn: &mut DbConnection,
    name: &str,
    role: Role,
    ttl_secs: Option<i64>,
    actor: &str,
) -> StoreResult<(ApiTokenRow, String)> {
    let token = auth::new_token(PREFIX)?;
    let now = now_ms();
    let row = ApiTokenRow {
        id: new_id(),
        name: name.to_owned(),
        token_hash: auth::token_hash(&token),
        role: role.as_str().to_owned(),
        created_by: actor.to_owned(),
        created_at: now,
        expires_at: ttl_secs.map(|t| now.saturating_add(t.saturating_mul(1000))),
        revoked_at: None,
        last_used_at: None,
    };
    diesel::insert_into(api_tokens::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => {
                StoreError::conflict("name_taken", format!("an API token named {name:?} exists"))
            }
            other => other,
        })?;
    audit::record(
        conn,
        actor,
        "api_token.create",
        &row.id,
        json!({ "name": name, "role": role, "expires_at": row.expires_at }),
    )?;
    Ok((row, token))
}

pub fn list(conn: &mut DbConnection) -> StoreResult<Vec<ApiTokenRow>> {
    Ok(api_tokens::table
        .order((api_tokens::created_at.desc(), api_tokens::id.asc()))
        .select(ApiTokenRow::as_select())
        .load(conn)?)
}

pub fn revoke(conn: &mut DbConnection, id: &str, actor: &str) -> StoreResult<()> {
    let n = diesel::update(
        api_tokens::table
            .find(id)
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(now_ms()))
    .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("API token"));
    }
    audit::record(conn, actor, "api_token.revoke", id, json!({}))?;
    Ok(())
}

/// The live token `token` is, noting its use; `None` when unknown,
/// revoked or expired.
pub fn authenticate(conn: &mut DbConnection, token: &str) -> StoreResult<Option<ApiTokenRow>> {
    let Some(row) = api_tokens::table
        .filter(api_tokens::token_hash.eq(auth::token_hash(token)))
        .select(ApiTokenRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let now = now_ms();
    if row.revoked_at.is_some() || row.expires_at.is_some_and(|e| e <= now) {
        return Ok(None);
    }
    if row
        .last_used_at
        .is_none_or(|t| now - t > LAST_USED_GRANULARITY_MS)
    {
        diesel::update(api_tokens::table.find(&row.id))
            .set(api_tokens::last_used_at.eq(now))
            .execute(conn)?;
    }
    Ok(Some(row))
}
