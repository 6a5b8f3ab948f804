-- API tokens for automation: admin-made, role-scoped, revocable. Only the
-- sha256 of the token is stored. Keep in step with the other backend.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- NULL: never expires.
    expires_at BIGINT,
    revoked_at BIGINT,
    -- Updated at most once a minute, so a busy token costs few writes.
    last_used_at BIGINT
);
