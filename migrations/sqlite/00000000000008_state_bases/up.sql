-- A state may be stored compressed against another state (its base, a
-- state stored alone) used as zstd's dictionary: machines' states differ
-- in a few packages, and so compressed one is a few hundred bytes instead
-- of tens of KiB. The foreign key keeps a base while a state needs it.
-- Keep in step with the other backend's folder.
ALTER TABLE states ADD COLUMN base TEXT REFERENCES states (hash);
CREATE INDEX states_base ON states (base) WHERE base IS NOT NULL;
