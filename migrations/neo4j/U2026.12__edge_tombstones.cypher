DROP CONSTRAINT edge_tombstone_key IF EXISTS;
