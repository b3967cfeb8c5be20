-- Events stored in the same PostgreSQL transaction as the rows they describe, waiting to be published
-- to Kafka in a transaction together with the consumed offsets (wavegraph.sinks.outbox,
-- wavegraph.streams.transactions). One sequence per (consumer group, input topic, partition); the
-- highest seq a Kafka transaction published rides in that partition's committed offset metadata, so
-- after a crash the rows above it are exactly the stored-but-unpublished events.
CREATE TABLE event_outbox (
    consumer_group text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL CHECK (partition >= 0),
    seq bigint NOT NULL CHECK (seq > 0),
    out_topic text NOT NULL,
    event_key bytea,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition, seq)
);
