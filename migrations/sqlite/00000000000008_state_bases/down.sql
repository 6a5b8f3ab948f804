-- A state stored against a base cannot be read without it: going back
-- suits a database whose states all have none.
DROP INDEX states_base;
ALTER TABLE states DROP COLUMN base;
