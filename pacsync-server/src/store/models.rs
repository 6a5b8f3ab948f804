//! Rows as diesel reads and writes them.

use diesel::prelude::*;

use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = pools)]
pub struct PoolRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub keep_extras: bool,
    pub auto_sync: bool,
    pub offline_grace_secs: i64,
    /// JSON array of glob patterns.
    pub exclusions: String,
    pub current_target_id: Option<String>,
    pub target_seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// JSON `{"include": [...], "exclude": [...]}` over the repository analysis.
    pub repo_overrides: String,
    /// JSON array of names the last repository analysis excluded.
    pub analysis_excluded: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = pool_targets)]
pub struct PoolTargetRow {
    pub id: String,
    pub pool_id: String,
    pub seq: i64,
    pub target_hash: String,
    pub kind: String,
    pub created_by: String,
    pub from_endpoint_id: Option<String>,
    pub from_endpoint_name: Option<String>,
    pub comment: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = endpoints)]
pub struct EndpointRow {
    pub id: String,
    pub name: String,
    pub pool_id: Option<String>,
    pub state_hash: Option<String>,
    pub status: String,
    pub last_error: Option<String>,
    pub last_seen_at: Option<i64>,
    pub state_changed_at: Option<i64>,
    pub session_gen: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = endpoint_states)]
pub struct EndpointStateRow {
    pub id: String,
    pub endpoint_id: String,
    pub state_hash: String,
    pub reported_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = operations)]
pub struct OperationRow {
    pub id: String,
    pub endpoint_id: String,
    pub kind: String,
    pub status: String,
    pub progress: i32,
    pub message: Option<String>,
    pub requested_by: String,
    pub target_hash: Option<String>,
    pub from_state_hash: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enrollment_tokens)]
pub struct EnrollmentTokenRow {
    pub id: String,
    pub token_hash: String,
    pub pool_id: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub uses: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct ApiTokenRow {
    pub id: String,
    pub name: String,
    pub token_hash: String,
    pub role: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshTokenRow {
    pub id: String,
    pub endpoint_id: String,
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}
