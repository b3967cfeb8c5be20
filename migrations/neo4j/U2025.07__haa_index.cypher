// Undo of V2025.07: drop the HAA vector index and the uniqueness constraint, bring back the RANGE index,
// and restore every merged duplicate with its own properties and relationships (and the survivor's
// original properties). Written to tolerate a partially applied V2025.07 (every step is a no-op when
// there is nothing to restore), so it also serves as the automatic rollback of a failed apply.

DROP INDEX node_haa IF EXISTS;
DROP CONSTRAINT node_tenant_id_unique IF EXISTS;
CREATE INDEX node_tenant_id IF NOT EXISTS FOR (n:Node) ON (n.tenant, n.id);
CREATE INDEX haa_merged_key IF NOT EXISTS FOR (d:_HaaMerged) ON (d._haa_key);
CALL db.awaitIndexes(300);

// relationships moved off a duplicate's outgoing side (their start is the survivor); once per type,
// written literally, as in V2025.07
// wavegraph:for-each-relationship-type
MATCH (d:_HaaMerged)
CALL (d) {
  MATCH (s:Node {tenant: d.tenant, id: d.id})
  MATCH (s)-[m:${rel_type}]->(b)
  WHERE m._haa_src = d._haa_key
  OPTIONAL MATCH (e:_HaaMerged {_haa_key: m._haa_dst})
  WITH d, m, coalesce(e, b) AS end
  CREATE (d)-[r:${rel_type}]->(end)
  SET r = properties(m)
  REMOVE r._haa_src, r._haa_dst
  DELETE m
} IN TRANSACTIONS OF 200 ROWS;

// relationships moved off a duplicate's incoming side only
// wavegraph:for-each-relationship-type
MATCH (d:_HaaMerged)
CALL (d) {
  MATCH (s:Node {tenant: d.tenant, id: d.id})
  MATCH (a)-[m:${rel_type}]->(s)
  WHERE m._haa_dst = d._haa_key AND m._haa_src IS NULL
  CREATE (a)-[r:${rel_type}]->(d)
  SET r = properties(m)
  REMOVE r._haa_dst
  DELETE m
} IN TRANSACTIONS OF 200 ROWS;

// the survivors' own properties (while the duplicates are not :Node yet, the key is unique)
MATCH (p:_HaaSurvivorProps)
CALL (p) {
  MATCH (s:Node {tenant: p.tenant, id: p.id})
  SET s = properties(p)
  DELETE p
} IN TRANSACTIONS OF 500 ROWS;

// the duplicates themselves
MATCH (d:_HaaMerged)
CALL (d) {
  REMOVE d:_HaaMerged, d._haa_key
  SET d:Node
} IN TRANSACTIONS OF 1000 ROWS;

DROP INDEX haa_merged_key IF EXISTS;
