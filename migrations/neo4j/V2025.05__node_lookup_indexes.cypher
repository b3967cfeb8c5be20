// Lookup indexes for the edge sink (wavegraph.sinks.neo4j), which MERGEs nodes on (tenant, id) and
// relationships of any type carrying weight, ts, event_id and tenant.
//
// (tenant, id) gets a plain composite RANGE index here so MERGE is fast on a graph that may still hold
// duplicates; V2025.07 (the HAA migration) removes the duplicates and replaces this index with the
// uniqueness constraint (Neo4j refuses a constraint on the schema of an existing index).
CREATE INDEX node_tenant_id IF NOT EXISTS FOR (n:Node) ON (n.tenant, n.id);

// Relationship property indexes need a type; LINKS is the default relationship type of edge events.
CREATE INDEX links_event_id IF NOT EXISTS FOR ()-[r:LINKS]-() ON (r.event_id);
CREATE INDEX links_tenant_ts IF NOT EXISTS FOR ()-[r:LINKS]-() ON (r.tenant, r.ts);

// Relationships of other types are found through the relationship type lookup index every Neo4j 5
// database has by default (index_f7700477); nothing to create for them.
CALL db.awaitIndexes(300);
