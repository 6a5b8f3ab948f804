DROP INDEX archive_files_name_version;
DROP TABLE archive_files;
