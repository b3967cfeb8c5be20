-- Full-text search for GET|POST /v1/search (wavegraph.query.lexical): a generated tsvector column with
-- a GIN index on transcript segments (English stemming and stop words: "signed" matches "signing") and on
-- node ids ('simple' config, punctuation turned into spaces so "user:ada_lovelace" matches "lovelace").
-- STORED generated columns are computed by PostgreSQL on every insert/update, so a segment is searchable
-- as soon as its transaction commits; the writers (sinks/transcripts, sinks/node_embeddings) are unchanged.
ALTER TABLE transcript_segments
    ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;

CREATE INDEX transcript_segments_search_gin ON transcript_segments USING gin (search_tsv);

ALTER TABLE node_embeddings
    ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', regexp_replace(node, '[^[:alnum:]]+', ' ', 'g'))
    ) STORED;

CREATE INDEX node_embeddings_search_gin ON node_embeddings USING gin (search_tsv);
