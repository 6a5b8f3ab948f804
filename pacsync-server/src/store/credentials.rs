//! Users, enrollment tokens and machine refresh tokens. Only hashes of
//! secrets are stored.

use diesel::prelude::*;
use serde_json::json;

use super::models::{EnrollmentTokenRow, RefreshTokenRow, UserRow};
use super::schema::{endpoints, enrollment_tokens, pools, refresh_tokens, users};
use super::{DbConnection, StoreError, StoreResult, audit, new_id, now_ms};
use crate::auth::{self, REFRESH_TOKEN_SECS, Role};

pub fn create_user(
    conn: &mut DbConnection,
    name: &str,
    password_hash: &str,
    role: Role,
    actor: &str,
) -> StoreResult<UserRow> {
    let row = UserRow {
        id: new_id(),
        name: name.to_owned(),
        password_hash: password_hash.to_owned(),
        role: role.as_str().to_owned(),
        created_at: now_ms(),
    };
    diesel::insert_into(users::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict { .. } => {
                StoreError::conflict("name_taken", format!("a user named {name:?} exists"))
            }
            other => other,
        })?;
    audit::record(
        conn,
        actor,
        "user.create",
        &row.id,
        json!({ "name": name, "role": role }),
    )?;
    Ok(row)
}

pub fn user_by_name(conn: &mut DbConnection, name: &str) -> StoreResult<Option<UserRow>> {
    Ok(users::table
        .filter(users::name.eq(name))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn user_by_id(conn: &mut DbConnection, id: &str) -> StoreResult<Option<UserRow>> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_users(conn: &mut DbConnection) -> StoreResult<Vec<UserRow>> {
    Ok(users::table
        .order(users::name.asc())
        .select(UserRow::as_select())
        .load(conn)?)
}

/// Takes the users table for this transaction on PostgreSQL, so that two
/// concurrent changes cannot each leave "another" admin and end with none.
/// SQLite's write transactions are serial already.
fn lock_users(conn: &mut DbConnection) -> StoreResult<()> {
    if let DbConnection::Pg(c) = conn {
        diesel::sql_query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE").execute(c)?;
    }
    Ok(())
}

/// Refuses a change that leaves no admin: `user` is about to stop being one.
fn keep_an_admin(conn: &mut DbConnection, user: &UserRow, what: &str) -> StoreResult<()> {
    if user.role != Role::Admin.as_str() {
        return Ok(());
    }
    let admins: i64 = users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .count()
        .get_result(conn)?;
    if admins <= 1 {
        return Err(StoreError::conflict(
            "last_admin",
            format!("{} is the last admin; {what} would leave none", user.name),
        ));
    }
    Ok(())
}

/// Changes a user's role and/or password. A new password ends every
/// session of the user; a new role counts from the next request.
pub fn update_user(
    conn: &mut DbConnection,
    id: &str,
    role: Option<Role>,
    password_hash: Option<&str>,
    actor: &str,
) -> StoreResult<UserRow> {
    lock_users(conn)?;
    let mut user = user_by_id(conn, id)?.ok_or(StoreError::NotFound("user"))?;
    if let Some(role) = role.filter(|r| r.as_str() != user.role) {
        if role != Role::Admin {
            keep_an_admin(conn, &user, "demoting them")?;
        }
        diesel::update(users::table.find(id))
            .set(users::role.eq(role.as_str()))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            "user.role_change",
            id,
            json!({ "name": user.name, "from": user.role, "to": role }),
        )?;
        user.role = role.as_str().to_owned();
    }
    if let Some(hash) = password_hash {
        diesel::update(users::table.find(id))
            .set(users::password_hash.eq(hash))
            .execute(conn)?;
        let ended = super::sessions::end_all_of(conn, id)?;
        audit::record(
            conn,
            actor,
            "user.password_reset",
            id,
            json!({ "name": user.name, "sessions_ended": ended }),
        )?;
        hash.clone_into(&mut user.password_hash);
    }
    Ok(user)
}

/// Deletes a user and ends their sessions; the last admin stays.
pub fn delete_user(conn: &mut DbConnection, id: &str, actor: &str) -> StoreResult<()> {
    lock_users(conn)?;
    let user = user_by_id(conn, id)?.ok_or(StoreError::NotFound("user"))?;
    keep_an_admin(conn, &user, "deleting them")?;
    let ended = super::sessions::end_all_of(conn, id)?;
    diesel::delete(users::table.find(id)).execute(conn)?;
    audit::record(
        conn,
        actor,
        "user.delete",
        id,
        json!({ "name": user.name, "role": user.role, "sessions_ended": ended }),
    )?;
    Ok(())
}

/// Finds a pool by id or, failing that, by name.
pub fn resolve_pool(conn: &mut DbConnection, id_or_name: &str) -> StoreResult<String> {
    pools::table
        .filter(pools::id.eq(id_or_name).or(pools::name.eq(id_or_name)))
        .select(pools::id)
        .first(conn)
        .optional()?
        .ok_or(StoreError::invalid(
            "unknown_pool",
            format!("no pool {id_or_name:?}"),
        ))
}

/// Makes an enrollment token; returns its row and the token, which exists
/// nowhere else afterwards.
pub fn create_enrollment(
    conn: &mut DbConnection,
    pool: Option<&str>,
    ttl_secs: i64,
    actor: &str,
) -> StoreResult<(EnrollmentTokenRow, String)> {
    let pool_id = match pool {
        Some(p) => Some(resolve_pool(conn, p)?),
        None => None,
    };
    let token = auth::new_token("pse_")?;
    let now = now_ms();
    let row = EnrollmentTokenRow {
        id: new_id(),
        token_hash: auth::token_hash(&token),
        pool_id,
        created_by: actor.to_owned(),
        created_at: now,
        expires_at: now.saturating_add(ttl_secs.saturating_mul(1000)),
        revoked_at: None,
        uses: 0,
    };
    diesel::insert_into(enrollment_tokens::table)
        .values(&row)
        .execute(conn)?;
    audit::record(
        conn,
        actor,
        "enrollment_token.create",
        &row.id,
        json!({ "pool": row.pool_id, "expires_at": row.expires_at }),
    )?;
    Ok((row, token))
}

pub fn list_enrollments(conn: &mut DbConnection) -> StoreResult<Vec<EnrollmentTokenRow>> {
    Ok(enrollment_tokens::table
        .order(enrollment_tokens::created_at.desc())
        .select(EnrollmentTokenRow::as_select())
        .load(conn)?)
}

pub fn revoke_enrollment(conn: &mut DbConnection, id: &str, actor: &str) -> StoreResult<()> {
    let n = diesel::update(enrollment_tokens::table.find(id))
        .set(enrollment_tokens::revoked_at.eq(now_ms()))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("enrollment token"));
    }
    audit::record(conn, actor, "enrollment_token.revoke", id, json!({}))?;
    Ok(())
}

/// Checks an enrollment token and counts its use.
pub fn consume_enrollment(conn: &mut DbConnection, token: &str) -> StoreResult<EnrollmentTokenRow> {
    let invalid = || {
        StoreError::invalid(
            "invalid_enrollment_token",
            "enrollment token unknown, expired or revoked",
        )
    };
    let row: EnrollmentTokenRow = enrollment_tokens::table
        .filter(enrollment_tokens::token_hash.eq(auth::token_hash(token)))
        .select(EnrollmentTokenRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(invalid)?;
    if row.revoked_at.is_some() || row.expires_at <= now_ms() {
        return Err(invalid());
    }
    diesel::update(enrollment_tokens::table.find(&row.id))
        .set(enrollment_tokens::uses.eq(row.uses + 1))
        .execute(conn)?;
    Ok(row)
}

pub fn issue_refresh(conn: &mut DbConnection, endpoint_id: &str) -> StoreResult<String> {
    let token = auth::new_token("psr_")?;
    let now = now_ms();
    diesel::insert_into(refresh_tokens::table)
        .values(RefreshTokenRow {
            id: new_id(),
            endpoint_id: endpoint_id.to_owned(),
            token_hash: auth::token_hash(&token),
            created_at: now,
            expires_at: now.saturating_add(REFRESH_TOKEN_SECS * 1000),
            used_at: None,
            revoked_at: None,
        })
        .execute(conn)?;
    Ok(token)
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Refreshed {
    /// A new refresh token; the old one is spent.
    Rotated {
        endpoint_id: String,
        generation: i64,
        refresh_token: String,
    },
    /// Unknown, expired or revoked.
    Invalid,
    /// A spent token came back: someone holds a copy. Every token of the
    /// machine is revoked and its access tokens stop working.
    Reused,
}

pub fn rotate_refresh(conn: &mut DbConnection, token: &str) -> StoreResult<Refreshed> {
    let Some(row) = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(auth::token_hash(token)))
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(Refreshed::Invalid);
    };
    let now = now_ms();
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Ok(Refreshed::Invalid);
    }
    // Spending is a conditional update so that of two concurrent uses of
    // one token only one spends it and the other counts as reuse.
    let spent = diesel::update(
        refresh_tokens::table
            .find(&row.id)
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(now))
    .execute(conn)?;
    if spent != 1 {
        diesel::update(
            refresh_tokens::table.filter(refresh_tokens::endpoint_id.eq(&row.endpoint_id)),
        )
        .filter(refresh_tokens::revoked_at.is_null())
        .set(refresh_tokens::revoked_at.eq(now))
        .execute(conn)?;
        diesel::update(endpoints::table.find(&row.endpoint_id))
            .set(endpoints::session_gen.eq(endpoints::session_gen + 1))
            .execute(conn)?;
        audit::record(
            conn,
            &format!("machine:{}", row.endpoint_id),
            "endpoint.refresh_reuse",
            &row.endpoint_id,
            json!({}),
        )?;
        return Ok(Refreshed::Reused);
    }
    let generation: i64 = endpoints::table
        .find(&row.endpoint_id)
        .select(endpoints::session_gen)
        .first(conn)?;
    let refresh_token = issue_refresh(conn, &row.endpoint_id)?;
    Ok(Refreshed::Rotated {
        endpoint_id: row.endpoint_id,
        generation,
        refresh_token,
    })
}
