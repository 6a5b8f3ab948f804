-- A user's signed-in sessions (a login, on the web UI or the API). An
-- access token names its session; logging out, a password reset or the
-- user's deletion removes the row and the token stops working at once.
-- Keep in step with the other backend.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
