-- Node analytics of the graph job (wavegraph.nodes.v1): PageRank, the node embedding (Node2Vec or
-- GraphWave mapped into the Poincaré ball) and its hyperbolic attention aggregate HAA, both of
-- dimension haa_dim (= graph.embedding_dim), for each (tenant, node) at an embedding version.
CREATE TABLE node_embeddings (
    tenant text NOT NULL,
    node text NOT NULL,
    embedding vector(${haa_dim}),
    haa vector(${haa_dim}),
    pagerank double precision CHECK (pagerank >= 0),
    version integer NOT NULL DEFAULT 0 CHECK (version >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, node)
);

-- Poincaré-ball points: the norm matters (depth in the hierarchy), so L2 rather than cosine; the same
-- choice as the Neo4j vector index on Node.haa.
CREATE INDEX node_embeddings_embedding_ivfflat ON node_embeddings
    USING ivfflat (embedding vector_l2_ops) WITH (lists = ${ivfflat_lists});
CREATE INDEX node_embeddings_haa_ivfflat ON node_embeddings
    USING ivfflat (haa vector_l2_ops) WITH (lists = ${ivfflat_lists});
