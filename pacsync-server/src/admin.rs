//! What `pacsync-server admin …` does, callable from tests too.

use anyhow::Context as _;

use crate::auth::{self, Role};
use crate::store::models::{ApiTokenRow, EnrollmentTokenRow, UserRow};
use crate::store::{Store, api_tokens, credentials, write_tx};

/// Actor recorded in the audit log for shell commands.
pub const SHELL_ACTOR: &str = "shell";

pub fn create_user(
    store: &Store,
    name: &str,
    role: Role,
    password: &str,
) -> anyhow::Result<UserRow> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        anyhow::bail!("user name must be non-empty without control characters");
    }
    if password.chars().count() < 8 {
        anyhow::bail!("password must be at least 8 characters");
    }
    let hash = auth::hash_password(password)?;
    let mut conn = store_conn(store)?;
    write_tx(&mut conn, |c| {
        credentials::create_user(c, name, &hash, role, SHELL_ACTOR)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Returns the token row and the token itself (shown once).
pub fn enrollment_token(
    store: &Store,
    pool: Option<&str>,
    ttl_secs: i64,
) -> anyhow::Result<(EnrollmentTokenRow, String)> {
    let mut conn = store_conn(store)?;
    write_tx(&mut conn, |c| {
        credentials::create_enrollment(c, pool, ttl_secs, SHELL_ACTOR)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Makes an API token; returns its row and the token itself (shown once).
pub fn api_token(
    store: &Store,
    name: &str,
    role: Role,
    ttl_secs: Option<i64>,
) -> anyhow::Result<(ApiTokenRow, String)> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        anyhow::bail!("token name must be non-empty without control characters");
    }
    let mut conn = store_conn(store)?;
    write_tx(&mut conn, |c| {
        api_tokens::create(c, name, role, ttl_secs, SHELL_ACTOR)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn store_conn(
    store: &Store,
) -> anyhow::Result<impl std::ops::DerefMut<Target = crate::store::DbConnection>> {
    store.blocking_conn().context("opening the database")
}
