-- pacsync's schema, PostgreSQL flavour. Keep in step with ../../sqlite:
-- a test compares the tables and columns of both.
-- Times are Unix milliseconds (BIGINT) so both backends store them alike.

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at BIGINT NOT NULL
);

CREATE TABLE pools (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    keep_extras BOOLEAN NOT NULL,
    auto_sync BOOLEAN NOT NULL,
    offline_grace_secs BIGINT NOT NULL,
    exclusions TEXT NOT NULL,
    -- The pool_targets row in force; no foreign key because the two tables
    -- point at each other. Set-latest swaps it with a compare-and-set.
    current_target_id TEXT,
    target_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Package states, stored once per distinct content (zstd-compressed JSON).
CREATE TABLE states (
    hash TEXT PRIMARY KEY NOT NULL,
    package_count BIGINT NOT NULL,
    content BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Target contents, stored once per distinct content.
CREATE TABLE target_contents (
    hash TEXT PRIMARY KEY NOT NULL,
    package_count BIGINT NOT NULL,
    content BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE pool_targets (
    id TEXT PRIMARY KEY NOT NULL,
    pool_id TEXT NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    target_hash TEXT NOT NULL REFERENCES target_contents (hash),
    kind TEXT NOT NULL CHECK (kind IN ('set_latest', 'rollback')),
    created_by TEXT NOT NULL,
    from_endpoint_id TEXT,
    from_endpoint_name TEXT,
    comment TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (pool_id, seq)
);

CREATE TABLE endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    pool_id TEXT REFERENCES pools (id) ON DELETE SET NULL,
    state_hash TEXT REFERENCES states (hash),
    status TEXT NOT NULL,
    last_error TEXT,
    last_seen_at BIGINT,
    state_changed_at BIGINT,
    -- Bumped when refresh-token reuse revokes the machine's session; access
    -- tokens carry the generation they were issued for.
    session_gen BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX endpoints_pool ON endpoints (pool_id);
CREATE INDEX endpoints_status ON endpoints (status);

CREATE TABLE endpoint_states (
    id TEXT PRIMARY KEY NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    state_hash TEXT NOT NULL REFERENCES states (hash),
    reported_at BIGINT NOT NULL
);
CREATE INDEX endpoint_states_endpoint ON endpoint_states (endpoint_id, reported_at);

CREATE TABLE operations (
    id TEXT PRIMARY KEY NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('sync', 'set_latest', 'revert')),
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress INTEGER NOT NULL,
    message TEXT,
    requested_by TEXT NOT NULL,
    target_hash TEXT,
    from_state_hash TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX operations_endpoint ON operations (endpoint_id, created_at);
-- At most one active operation per machine, enforced by the database so
-- two requests racing cannot both start one.
CREATE UNIQUE INDEX operations_one_active ON operations (endpoint_id)
    WHERE status IN ('queued', 'running');

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    pool_id TEXT REFERENCES pools (id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    uses BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Set when the token was exchanged; presenting it again is reuse.
    used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_endpoint ON refresh_tokens (endpoint_id);
