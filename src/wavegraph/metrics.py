"""Every Prometheus metric wavegraph exports, named and documented in one place.

Modules import the metric objects from here; none creates its own. Names follow Prometheus
conventions (base units, ``_total`` for counters); a few names are fixed by the backlog
(``ingest_queue_fill_ratio``, ``breaker_state``, ``whisper_xrt``, ``pgvector_query_ms``).
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)


def serve_metrics(port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve :data:`REGISTRY` at ``http://host:port/metrics`` from a daemon thread (a processor's
    scrape target); stop it with ``shutdown()`` then ``server_close()``. Raises ``OSError`` when the
    port is taken."""
    server, _thread = start_http_server(port, host, registry=REGISTRY)
    return server


# --- stream runtime -------------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "wavegraph_events_consumed_total",
    "Records taken from Kafka by a processor.",
    ["processor", "topic"],
    registry=REGISTRY,
)
EVENTS_SUNK = Counter(
    "wavegraph_events_sunk_total",
    "Valid events written and flushed by a processor's sink.",
    ["processor"],
    registry=REGISTRY,
)
DLQ_EVENTS = Counter(
    "wavegraph_dlq_events_total",
    "Events sent to the dead-letter topic, by processor and reason code (a fixed set).",
    ["processor", "reason"],
    registry=REGISTRY,
)
DLQ_SEND_RETRIES = Counter(
    "wavegraph_dlq_send_retries_total",
    "Dead-letter sends retried because the broker did not acknowledge them.",
    ["processor"],
    registry=REGISTRY,
)
BACKPRESSURE_PAUSES = Counter(
    "wavegraph_backpressure_pauses_total",
    "Times a processor paused its partitions on backpressure.",
    ["processor"],
    registry=REGISTRY,
)
COMMITS = Counter(
    "wavegraph_offset_commits_total",
    "Offset commits after a flushed batch.",
    ["processor"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "wavegraph_batch_seconds",
    "Time from fetch to commit of one batch.",
    ["processor"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "wavegraph_consumer_lag",
    "High watermark minus the flushed (about to be committed) offset, summed over the partitions.",
    ["processor", "topic"],
    registry=REGISTRY,
)

# --- Neo4j ingest ---------------------------------------------------------------------------
INGEST_QUEUE_FILL_RATIO = Gauge(
    "ingest_queue_fill_ratio",
    "Fill of the Neo4j sink's bounded buffer divided by its capacity.",
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "breaker_state",
    "Neo4j circuit breaker: 0 closed, 1 open, 2 half-open.",
    registry=REGISTRY,
)
BREAKER_TRANSITIONS = Counter(
    "breaker_transitions_total",
    "Circuit breaker state changes.",
    ["from_state", "to_state"],
    registry=REGISTRY,
)
NEO4J_WRITE_SECONDS = Histogram(
    "wavegraph_neo4j_write_seconds",
    "Duration of one UNWIND batch write to Neo4j.",
    registry=REGISTRY,
)
NEO4J_RETRIES = Counter(
    "wavegraph_neo4j_retries_total",
    "Neo4j writes retried after an outage error (connection, transient), before the breaker counts one.",
    registry=REGISTRY,
)
HTTP_REJECTED = Counter(
    "wavegraph_http_rejected_total",
    "Requests answered 429, by reason.",
    ["reason"],
    registry=REGISTRY,
)

# --- speech recognition ---------------------------------------------------------------------
WHISPER_XRT = Gauge(
    "whisper_xrt",
    "Real-time factor of the last transcription: processing time / audio time.",
    ["device", "model"],
    registry=REGISTRY,
)
WHISPER_XRT_HIST = Histogram(
    "whisper_xrt_ratio",
    "Distribution of real-time factors per transcribed window.",
    ["device", "model"],
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
    registry=REGISTRY,
)
AUDIO_SECONDS = Counter(
    "wavegraph_audio_seconds_total",
    "Seconds of audio transcribed.",
    ["device", "model"],
    registry=REGISTRY,
)
ASR_ROUTE = Gauge(
    "wavegraph_asr_route_info",
    "The device route and batch size chosen at start (value 1).",
    ["device", "batch_size"],
    registry=REGISTRY,
)

# --- vector search --------------------------------------------------------------------------
PGVECTOR_QUERY_MS = Histogram(
    "pgvector_query_ms",
    "pgvector nearest-neighbour query time in milliseconds.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 50, 100, 250, 1000),
    registry=REGISTRY,
)
PGVECTOR_LAST_QUERY_MS = Gauge(
    "pgvector_last_query_ms",
    "Duration of the last pgvector query in milliseconds.",
    registry=REGISTRY,
)
SEARCH_QUERY_MS = Histogram(
    "wavegraph_search_query_ms",
    "Search API query time in milliseconds by backend.",
    ["backend"],
    buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 250, 1000),
    registry=REGISTRY,
)

# --- read side cache (the names are the issue's: no wavegraph_ prefix) ---------------------------
CACHE_HIT_RATIO = Gauge(
    "cache_hit_ratio", "Response-cache hit ratio over the last PI interval.", registry=REGISTRY
)
CACHE_TTL_SECONDS = Gauge(
    "cache_ttl_seconds", "TTL the PI controller gives new response-cache entries.", registry=REGISTRY
)
CACHE_REQUESTS = Counter(
    "cache_requests_total",
    "Response-cache lookups by result (hit, miss, bypass = Cache-Control: no-cache, error = Redis down).",
    ["result"],
    registry=REGISTRY,
)
PID_ERROR = Gauge(
    "pid_error", "PI controller error e = target - hit ratio (last interval).", registry=REGISTRY
)
PID_INTEGRAL = Gauge("pid_integral", "PI controller integral I (clamped to ±I_max).", registry=REGISTRY)
