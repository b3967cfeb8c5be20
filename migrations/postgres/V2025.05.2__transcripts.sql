-- Transcribed windows of audio streams (wavegraph.transcripts.v1), one row per (tenant, stream, window),
-- and their segments with a MiniLM embedding each (text_dim = vector.dim, 384).
-- `window` is a reserved word in PostgreSQL, hence window_index.
CREATE TABLE transcripts (
    tenant text NOT NULL,
    stream_id text NOT NULL,
    window_index integer NOT NULL CHECK (window_index >= 0),
    start_s double precision NOT NULL CHECK (start_s >= 0),
    end_s double precision NOT NULL,
    text text NOT NULL,
    model text NOT NULL,
    device text,
    processing_ms double precision,
    xrt double precision,
    event_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, stream_id, window_index),
    CHECK (end_s >= start_s)
);

CREATE INDEX transcripts_tenant_created ON transcripts (tenant, created_at);

CREATE TABLE transcript_segments (
    tenant text NOT NULL,
    stream_id text NOT NULL,
    window_index integer NOT NULL,
    segment integer NOT NULL CHECK (segment >= 0),
    start_s double precision NOT NULL,
    end_s double precision NOT NULL,
    text text NOT NULL,
    embedding vector(${text_dim}),
    PRIMARY KEY (tenant, stream_id, window_index, segment),
    FOREIGN KEY (tenant, stream_id, window_index)
        REFERENCES transcripts (tenant, stream_id, window_index) ON DELETE CASCADE,
    CHECK (end_s >= start_s)
);

-- MiniLM vectors are unit-norm: cosine distance (<=>) is the natural operator.
CREATE INDEX transcript_segments_embedding_ivfflat ON transcript_segments
    USING ivfflat (embedding vector_cosine_ops) WITH (lists = ${ivfflat_lists});
