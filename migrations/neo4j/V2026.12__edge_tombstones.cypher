// Tombstones of deleted edges (wavegraph.sinks.neo4j): a delete leaves (:EdgeTombstone {tenant, key, ts})
// so that an older upsert arriving after it (another partition, a replay) does not bring the edge back.
// `key` is the edge key id(tenant, src, rel, dst); the upsert looks the tombstone up on (tenant, key).
CREATE CONSTRAINT edge_tombstone_key IF NOT EXISTS FOR (t:EdgeTombstone) REQUIRE (t.tenant, t.key) IS UNIQUE;
CALL db.awaitIndexes(300);
