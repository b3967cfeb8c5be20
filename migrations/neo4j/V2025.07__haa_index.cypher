// The HAA migration (backlog: 2025-07-haa_index.cypher).
//
// 1. Merge (:Node) duplicates that share (tenant, id) into one survivor per key: the node with the most
//    relationships (ties: the smallest elementId). The survivor keeps its own property values and gains
//    the keys only its duplicates had (an earlier duplicate wins over a later one). Every relationship
//    of a duplicate, in either direction and of any type, is re-created on the survivor with the same
//    type and properties and the original is deleted: the relationship count is unchanged.
// 2. Replace the RANGE index on (tenant, id) by the uniqueness constraint (Community Edition has no
//    node key or existence constraints).
// 3. Create the vector index on Node.haa, the hyperbolic attention aggregate (dimension: the
//    haa_dim placeholder, = graph.embedding_dim). Euclidean, not cosine: in the Poincaré ball the norm
//    of an embedding carries its depth in the hierarchy, which cosine similarity would ignore.
//
// Statements marked `wavegraph:for-each-relationship-type` run once per relationship type with
// ${rel_type} = that type (see wavegraph/migrations/expand.py).
//
// It is reversible (U2025.07): each merged duplicate is kept as an inert (:_HaaMerged {_haa_key}) node
// without the :Node label or relationships, the survivor's own properties are kept in a
// (:_HaaSurvivorProps) node, and a moved relationship carries _haa_src / _haa_dst = the _haa_key of the
// duplicate it was moved from. Labels starting with _Haa and properties starting with _haa_ are reserved.
// Post-checks: V2025.07__haa_index.checks.toml.

CREATE INDEX haa_merged_key IF NOT EXISTS FOR (d:_HaaMerged) ON (d._haa_key);
CALL db.awaitIndexes(300);

// 1a. choose survivors, merge properties, archive duplicates (one transaction per 200 keys)
MATCH (n:Node)
WHERE n.tenant IS NOT NULL AND n.id IS NOT NULL
WITH n.tenant AS tenant, n.id AS id, collect(n) AS group
WHERE size(group) > 1
CALL (group) {
  UNWIND group AS x
  WITH x ORDER BY COUNT { (x)--() } DESC, elementId(x)
  WITH collect(x) AS ordered
  WITH head(ordered) AS s, tail(ordered) AS dups
  CREATE (p:_HaaSurvivorProps)
  SET p = properties(s)
  WITH s, dups, properties(s) AS own
  FOREACH (d IN reverse(dups) | SET s += properties(d))
  SET s += own
  FOREACH (d IN dups | SET d:_HaaMerged, d._haa_key = randomUUID() REMOVE d:Node)
} IN TRANSACTIONS OF 200 ROWS;

// 1b. relationships leaving a duplicate (including those between two duplicates, and self-loops).
// The type is written literally, once per relationship type: Neo4j 5.26.0 resolves a dynamic type
// [m:$(type(r))] only once per query plan (neo4j/neo4j#13597), which would retype relationships.
// wavegraph:for-each-relationship-type
MATCH (d:_HaaMerged)
CALL (d) {
  MATCH (d)-[r:${rel_type}]->(b)
  MATCH (s:Node {tenant: d.tenant, id: d.id})
  OPTIONAL MATCH (bs:Node {tenant: b.tenant, id: b.id}) WHERE b:_HaaMerged
  WITH d, r, b, s, coalesce(bs, b) AS e
  CREATE (s)-[m:${rel_type}]->(e)
  SET m = properties(r), m._haa_src = d._haa_key, m._haa_dst = CASE WHEN b:_HaaMerged THEN b._haa_key END
  DELETE r
} IN TRANSACTIONS OF 200 ROWS;

// 1c. relationships entering a duplicate (every one left starts at a node that is not a duplicate)
// wavegraph:for-each-relationship-type
MATCH (d:_HaaMerged)
CALL (d) {
  MATCH (a)-[r:${rel_type}]->(d)
  MATCH (s:Node {tenant: d.tenant, id: d.id})
  CREATE (a)-[m:${rel_type}]->(s)
  SET m = properties(r), m._haa_dst = d._haa_key
  DELETE r
} IN TRANSACTIONS OF 200 ROWS;

// 2. uniqueness on (tenant, id), replacing the plain index of V2025.05
DROP INDEX node_tenant_id IF EXISTS;
CREATE CONSTRAINT node_tenant_id_unique IF NOT EXISTS FOR (n:Node) REQUIRE (n.tenant, n.id) IS UNIQUE;

// 3. the HAA vector index
CREATE VECTOR INDEX node_haa IF NOT EXISTS
FOR (n:Node) ON n.haa
OPTIONS {indexConfig: {`vector.dimensions`: ${haa_dim}, `vector.similarity_function`: 'euclidean'}};

CALL db.awaitIndexes(600);
