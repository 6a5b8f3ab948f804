-- Nothing to do on SQLite, which does not compress values itself; the
-- migration is here to keep both backends' folders in step (on PostgreSQL
-- it turns off its compression of the already compressed contents).
SELECT 1;
