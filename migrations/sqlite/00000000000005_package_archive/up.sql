-- The package archive: one row per stored package file, named by the
-- sha256 of its content (the file lives under ARCHIVE_DIR/objects/).
-- Keep in step with the other backend.
CREATE TABLE archive_files (
    sha256 TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    arch TEXT NOT NULL,
    filename TEXT NOT NULL,
    size BIGINT NOT NULL,
    -- The package's own .PKGINFO, for the snapshot repositories' databases.
    pkginfo TEXT NOT NULL,
    -- The detached signature when one came with the file.
    signature BLOB,
    -- Who brought it: 'upload:ENDPOINT_ID' or 'import'.
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Set by verify when the file on disk no longer has this hash.
    damaged_at BIGINT
);
CREATE INDEX archive_files_name_version ON archive_files (name, version);
