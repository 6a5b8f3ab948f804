-- States, targets and repositories are stored zstd-compressed already:
-- PostgreSQL's own compression of large values (pglz) only spent CPU on
-- every insert finding it cannot shrink them (3% of all CPU time when
-- machines upload new states). Still moved out of line when large.
-- Keep in step with the other backend's folder.
ALTER TABLE states ALTER COLUMN content SET STORAGE EXTERNAL;
ALTER TABLE target_contents ALTER COLUMN content SET STORAGE EXTERNAL;
ALTER TABLE repo_contents ALTER COLUMN content SET STORAGE EXTERNAL;
