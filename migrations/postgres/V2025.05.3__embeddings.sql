-- The vector store's table (wavegraph.sinks.pgvector): any embedded thing of a tenant, keyed by
-- (tenant, kind, id), e.g. kind = 'transcript' | 'segment' | 'node'. Upserts use ON CONFLICT on the key.
CREATE TABLE embeddings (
    tenant text NOT NULL,
    kind text NOT NULL,
    id text NOT NULL,
    embedding vector(${text_dim}) NOT NULL,
    text text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, kind, id)
);

CREATE INDEX embeddings_embedding_ivfflat ON embeddings
    USING ivfflat (embedding vector_cosine_ops) WITH (lists = ${ivfflat_lists});
