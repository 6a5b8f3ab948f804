-- Repositories machines report, stored once per distinct content (most
-- machines share mirrors), and each machine's list of them in pacman.conf
-- order. Keep in step with the other backend's folder.

CREATE TABLE repo_contents (
    hash TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    package_count BIGINT NOT NULL,
    -- zstd-compressed JSON of pacsync-core's RepoIndex.
    content BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE endpoint_repos (
    endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    repo_hash TEXT NOT NULL REFERENCES repo_contents (hash),
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, position)
);
CREATE INDEX endpoint_repos_hash ON endpoint_repos (repo_hash);

-- Admins' include/exclude decisions over the analysis (JSON), and the names
-- the last analysis excluded (JSON array), which join the pool's exclusions.
ALTER TABLE pools ADD COLUMN repo_overrides TEXT NOT NULL DEFAULT '{"include":[],"exclude":[]}';
ALTER TABLE pools ADD COLUMN analysis_excluded TEXT NOT NULL DEFAULT '[]';
