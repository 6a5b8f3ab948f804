ALTER TABLE pools DROP COLUMN analysis_excluded;
ALTER TABLE pools DROP COLUMN repo_overrides;
DROP TABLE endpoint_repos;
DROP TABLE repo_contents;
