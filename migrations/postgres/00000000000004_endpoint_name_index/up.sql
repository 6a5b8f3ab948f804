-- The machine list is ordered by name: without this index every page
-- sorts the whole fleet.
CREATE INDEX endpoints_name ON endpoints (name, id);
