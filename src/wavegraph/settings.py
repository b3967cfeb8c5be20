"""One frozen, typed settings object, loaded once at start and passed down.

Sources, later ones winning: the defaults below, ``config/wavegraph.yaml`` (or the file named by
``WAVEGRAPH_CONFIG``), then environment variables ``WAVEGRAPH_<SECTION>__<KEY>`` (e.g.
``WAVEGRAPH_KAFKA__PORT=19092``; values are parsed as YAML scalars, so ``true``/``3``/``[a, b]`` work).
This is the only module that reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wavegraph.errors import ConfigError

ENV_PREFIX = "WAVEGRAPH_"
DEFAULT_CONFIG = Path("config/wavegraph.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class TopicsSettings(_Section):
    audio: str = "wavegraph.audio.v1"
    edges: str = "wavegraph.edges.v1"
    transcripts: str = "wavegraph.transcripts.v1"
    nodes: str = "wavegraph.nodes.v1"
    # The graph job's repartition topic: every valid edge again, keyed by tenant, so one partition
    # holds all edges of a tenant (processors/graph_job/route.py).
    edges_by_tenant: str = "wavegraph.edges.by-tenant.v1"
    dlq: str = "wavegraph.dlq.v1"


class KafkaSettings(_Section):
    version: str = "3.9.1"
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    partitions: int = Field(3, ge=1)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=60_000)  # audio, dead letters
    # -1: forever. Edges (both edge topics) are the graph's source of truth, transcripts PostgreSQL's
    # (see streams/topics.py).
    edges_retention_ms: int = Field(-1, ge=-1)
    transcripts_retention_ms: int = Field(-1, ge=-1)
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    heap: str = "512m"  # per broker
    # ``services up`` starts this many KRaft brokers (each also a controller voter); broker ``i``
    # (0-based) listens on ``port + broker_port_step * i``, its controller on
    # ``controller_port + broker_port_step * i`` (defaults: 9092/9093, 9102/9103, 9112/9113).
    brokers: int = Field(1, ge=1, le=9)
    broker_port_step: int = Field(10, ge=1)
    # ``null``: derived from the broker count N (see :meth:`replication`): min(3, N) and min(2, N).
    replication_factor: int | None = Field(None, ge=1)
    min_insync_replicas: int | None = Field(None, ge=1)
    topics: TopicsSettings = TopicsSettings()
    # Transcript and node events go out in Kafka transactions with the consumed offsets (exactly once
    # for a read_committed consumer; wavegraph.streams.transactions, processors/graph_job/publish.py);
    # false: published, then committed.
    exactly_once: bool = True
    transactional_id_prefix: str = "wavegraph"
    # An open transaction of a worker that died is aborted after this long at the latest (a restarted
    # worker with the same transactional id aborts it at once).
    transaction_timeout_ms: int = Field(30_000, ge=1000)

    @model_validator(mode="after")
    def _distinct_ports(self) -> KafkaSettings:
        ports = [*self.broker_ports, *self.controller_ports]
        if len(set(ports)) != len(ports) or max(ports) > 65535:
            raise ValueError(
                f"broker_port_step {self.broker_port_step} gives {self.brokers} brokers overlapping or "
                f"invalid ports {ports}: choose a step that keeps listener and controller ports apart"
            )
        for name in ("edges_retention_ms", "transcripts_retention_ms"):
            if 0 <= getattr(self, name) < 60_000:
                raise ValueError(f"{name} must be -1 (forever) or at least 60000")
        rf, isr = self.replication()
        if isr > rf:
            raise ValueError(f"min_insync_replicas {isr} exceeds the replication factor {rf}")
        return self

    @property
    def broker_ports(self) -> tuple[int, ...]:
        """The client port of every local broker, broker 1 first."""
        return tuple(self.port + self.broker_port_step * i for i in range(self.brokers))

    @property
    def controller_ports(self) -> tuple[int, ...]:
        return tuple(self.controller_port + self.broker_port_step * i for i in range(self.brokers))

    @property
    def bootstrap(self) -> str:
        """``host:port`` of every broker, comma-separated (what Kafka clients take)."""
        return ",".join(f"{self.host}:{port}" for port in self.broker_ports)

    def replication(self, brokers: int | None = None) -> tuple[int, int]:
        """(replication factor, ``min.insync.replicas``) of wavegraph's topics on a cluster of
        ``brokers`` (default: :attr:`brokers`): the configured values, else ``min(3, N)`` and
        ``min(2, N, rf)`` (1 and 1 on one broker; 3 and 2 on three)."""
        n = self.brokers if brokers is None else brokers
        rf = self.replication_factor or min(3, n)
        return rf, self.min_insync_replicas or min(2, n, rf)


class Neo4jSettings(_Section):
    version: str = "5.26.12"
    host: str = "127.0.0.1"
    bolt_port: int = Field(7687, ge=1, le=65535)
    user: str = "neo4j"
    password: str = "wavegraph-dev"
    auth: bool = False
    database: str | None = None  # None: the server's default database
    heap: str = "1g"
    pagecache: str = "256m"

    @property
    def uri(self) -> str:
        return f"bolt://{self.host}:{self.bolt_port}"


class PostgresSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5433, ge=1, le=65535)
    user: str = "postgres"
    database: str = "postgres"
    version: int = 18
    dsn: str | None = None
    # Server settings `services up` starts PostgreSQL with (a DSN-given server is not ours to tune).
    # Sized for a 24 GiB dev machine: an ivfflat scan at 1M 384-d rows reads probes/lists of a 1.6 GB
    # (vector) or 0.8 GB (halfvec) index, and at the stock 128MB every query copies most of that from the
    # OS page cache again (measured at probes 12: 92 % of its pages; p50 +20 % float32, +60 % halfvec);
    # shared memory is touched lazily, so unused buffers cost no RSS.
    shared_buffers: str = Field("3GB", pattern=r"^[0-9]+(kB|MB|GB)$")
    effective_cache_size: str = Field("8GB", pattern=r"^[0-9]+(kB|MB|GB)$")
    # an ivfflat build over 1,000 lists needs ~280 MB (k-means sample), HNSW at 1M rows ~2.4 GB
    maintenance_work_mem: str = Field("512MB", pattern=r"^[0-9]+(kB|MB|GB)$")
    # ivfflat sorts every candidate of its probed lists: ~120k at 1M rows, lists=100, probes 12, which
    # spills past the stock 4MB to temp files (measured: p50 -15 % at 64MB); 32MB covers ~probes 50
    work_mem: str = Field("32MB", pattern=r"^[0-9]+(kB|MB|GB)$")
    # glibc returns a freed block of ≥ 128 kB to the kernel at once (and trims the heap top), so the sort
    # memory of every such query is mapped and zeroed by page faults again: 10 % of the server's CPU
    # at ~120k candidates (perf, `wavegraph bench pgvector --profile`). Backends keep up to this much
    # freed memory for reuse instead (MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_); "0" keeps
    # glibc's defaults. A backend's resident memory then stays at its own peak until it exits.
    malloc_keep: str = Field("256MB", pattern=r"^[0-9]+(kB|MB|GB)?$")

    @field_validator("malloc_keep", mode="before")
    @classmethod
    def _plain_bytes(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # YAML/env "0" is an int

    @property
    def url(self) -> str:
        return self.dsn or f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def server_env(self) -> dict[str, str]:
        """Environment variables of the managed server (glibc's malloc, see ``malloc_keep``)."""
        size = _bytes(self.malloc_keep)
        if size == 0:
            return {}
        return {"MALLOC_TRIM_THRESHOLD_": str(size), "MALLOC_MMAP_THRESHOLD_": str(size)}

    def server_options(self) -> str:
        """The ``-c name=value`` options of the managed server (see the fields above)."""
        return (
            f"-c shared_buffers={self.shared_buffers} -c effective_cache_size={self.effective_cache_size} "
            f"-c maintenance_work_mem={self.maintenance_work_mem} -c work_mem={self.work_mem}"
        )


def _bytes(size: str) -> int:
    """``"256MB"`` -> 268435456 (PostgreSQL's units: kB, MB, GB, powers of 1024; no unit: bytes)."""
    units = {"kB": 2**10, "MB": 2**20, "GB": 2**30}
    for unit, scale in units.items():
        if size.endswith(unit):
            return int(size[: -len(unit)]) * scale
    return int(size)


class RedisSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


class ServicesSettings(_Section):
    state_dir: Path = Path(".wavegraph")
    cache_dir: Path = Path("~/.cache/wavegraph")
    start_timeout_s: float = Field(120.0, gt=0)
    # "prometheus" is optional: ``services up --with prometheus`` adds it for one run.
    enabled: tuple[Literal["kafka", "neo4j", "postgres", "redis", "prometheus"], ...] = (
        "kafka",
        "neo4j",
        "postgres",
        "redis",
    )

    @field_validator("state_dir", "cache_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()


class RuntimeSettings(_Section):
    group_prefix: str = "wavegraph"
    max_batch: int = Field(1000, ge=1)
    fetch_timeout_ms: int = Field(200, ge=1)
    max_event_bytes: int = Field(1024 * 1024, ge=64)
    commit_deadline_s: float = Field(10.0, gt=0)
    shutdown_timeout_s: float = Field(10.0, gt=0)
    default_retry_after_s: float = Field(1.0, gt=0)
    dlq_retry_backoff_s: float = Field(0.5, gt=0)
    dlq_retry_max_s: float = Field(30.0, gt=0)
    dlq_send_timeout_s: float = Field(10.0, gt=0)
    # This worker's number among the processes of one processor (``run ... --instances N`` sets it; a
    # supervisor restarting workers should too): its Kafka transactional id, so a restarted worker
    # fences (aborts) the open transaction of the one it replaces at once. None: an id of its own per
    # process (a dead worker's open transaction then ends after kafka.transaction_timeout_ms).
    instance: int | None = Field(None, ge=0)


class IngestSettings(_Section):
    batch_size: int = Field(500, ge=1)
    linger_ms: int = Field(50, ge=0)
    buffer_capacity: int = Field(10_000, ge=1)
    breaker_fail_max: int = Field(5, ge=1)
    breaker_timeout_s: float = Field(30.0, gt=0)
    retry_attempts: int = Field(3, ge=0)
    retry_backoff_s: float = Field(0.2, ge=0)
    breaker_state_ttl_s: float = Field(3.0, gt=0)


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    send_queue: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    api_keys: dict[str, str] = {"dev-key-acme": "acme", "dev-key-globex": "globex"}
    cors_origins: tuple[str, ...] = ()
    allow_dev_keys: bool = False
    metrics_key: str | None = None
    health_cache_s: float = Field(1.0, ge=0)


class AsrSettings(_Section):
    model: Literal["tiny.en", "base"] = "tiny.en"
    threads: int = Field(2, ge=1)
    workers: int = Field(1, ge=1)
    batch_gpu: int = Field(8, ge=1)
    window_s: float = Field(30.0, gt=0, le=30.0)
    idle_flush_s: float = Field(2.0, gt=0)
    max_stream_s: float = Field(3600.0, gt=0)
    max_open_streams: int = Field(1000, ge=1)
    max_buffered_s: float = Field(3600.0, gt=0)
    stream_expiry_s: float = Field(300.0, gt=0)


class GraphSettings(_Section):
    damping: float = Field(0.85, gt=0, lt=1)
    pagerank_tol: float = Field(1e-10, gt=0)
    recompute_fraction: float = Field(0.1, gt=0, le=1)
    embedding_dim: int = Field(64, ge=2)
    curvature: float = Field(-1.0, lt=0)
    haa_temperature: float = Field(1.0, gt=0)
    embedding: Literal["spectral", "node2vec"] = "spectral"
    publish_l1: float = Field(1e-7, gt=0)
    max_node_events: int = Field(10_000, ge=1)


class VectorSettings(_Section):
    backend: Literal["faiss", "pgvector"] = "faiss"
    dim: int = Field(384, ge=2)
    k_prime: int = Field(64, ge=50)
    ivfflat_lists: int = Field(100, ge=1)
    probes: int = Field(10, ge=1)
    ef_search: int = Field(64, ge=1)
    index_dir: Path = Path(".wavegraph/faiss")


class CacheSettings(_Section):
    """The Redis response cache of ``/v1/search`` and ``/v1/explain`` and the LMDB query-embedding cache."""

    enabled: bool = True
    ttl_initial_s: float = Field(60.0, gt=0)
    key_prefix: str = "wavegraph:cache:"
    # Redis keeps an entry this many times its TTL, so a lookup can tell "too old" (a longer TTL would
    # have hit) from "absent": the TTL controller's anti-windup needs the difference.
    expiry_headroom: float = Field(2.0, ge=1.0, le=10.0)
    lmdb_path: Path = Path(".wavegraph/embedding-cache")
    lmdb_max_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)

    @field_validator("lmdb_path")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()


class PidSettings(_Section):
    """The TTL controller (a discrete PI loop toward a target hit ratio); names fixed by the backlog."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, populate_by_name=True)

    target_hit_ratio: float = Field(0.45, gt=0, lt=1)
    Kp: float = Field(0.4, ge=0)
    Ki: float = Field(0.05, ge=0)
    I_max: float = Field(5.0, gt=0)
    interval_s: float = Field(0.25, gt=0)
    window_s: float = Field(1.0, ge=0)  # the hit ratio's measuring window (time constant); 0: one interval
    ttl_min_s: float = Field(1.0, gt=0)
    ttl_max_s: float = Field(86_400.0, gt=0)


class DpSettings(_Section):
    """Differentially private statistics: per-tenant epsilon budgets (``dp_budget`` table)."""

    default_epsilon_budget: float = Field(10.0, gt=0)
    max_query_epsilon: float | None = Field(None, gt=0)  # None: only the budget limits a query
    budget_window: Literal["none", "day", "week"] = "none"
    degree_bound: int = Field(64, ge=1)


class ReadSettings(_Section):
    """The read side's limits (search and explain)."""

    max_k: int = Field(100, ge=1, le=1000)
    explain_default_limit: int = Field(50, ge=1)
    explain_max_limit: int = Field(1000, ge=1)
    max_audio_bytes: int = Field(16 * 1024 * 1024, ge=1024)


class MetricsSettings(_Section):
    """Where each stream processor (``wavegraph run edges|audio|graph``) serves ``/metrics``; 0 disables.

    One port per processor so the three can run on one host; a second worker of the same processor on
    that host needs its own port (``WAVEGRAPH_METRICS__EDGES_PORT=...``) or 0. 93xx, clear of Kafka's
    brokers (9092 + 10·i and their controllers) and Prometheus (9090).
    """

    host: str = "127.0.0.1"
    edges_port: int = Field(9301, ge=0, le=65535)
    audio_port: int = Field(9302, ge=0, le=65535)
    graph_port: int = Field(9303, ge=0, le=65535)

    def port(self, processor: Literal["edges", "audio", "graph"]) -> int:
        """The metrics port of ``processor`` (0: not served)."""
        return int(getattr(self, f"{processor}_port"))


class PrometheusSettings(_Section):
    """The local Prometheus of ``services up --with prometheus``: it scrapes the API and the processors
    and evaluates ``rules_file`` (short intervals: a development server)."""

    host: str = "127.0.0.1"
    port: int = Field(9090, ge=1, le=65535)
    scrape_interval_s: float = Field(2.0, ge=0.1)
    evaluation_interval_s: float = Field(2.0, ge=0.1)
    retention: str = Field("2d", pattern=r"^[0-9]+(ms|s|m|h|d|w|y)$")
    rules_file: Path = Path("deploy/prometheus/rules.yml")


class Settings(_Section):
    kafka: KafkaSettings = KafkaSettings()
    neo4j: Neo4jSettings = Neo4jSettings()
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    services: ServicesSettings = ServicesSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    ingest: IngestSettings = IngestSettings()
    http: HttpSettings = HttpSettings()
    asr: AsrSettings = AsrSettings()
    graph: GraphSettings = GraphSettings()
    vector: VectorSettings = VectorSettings()
    cache: CacheSettings = CacheSettings()
    pid: PidSettings = PidSettings()
    dp: DpSettings = DpSettings()
    read: ReadSettings = ReadSettings()
    metrics: MetricsSettings = MetricsSettings()
    prometheus: PrometheusSettings = PrometheusSettings()


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from defaults, the YAML file and ``WAVEGRAPH_`` environment overrides.

    Raises :class:`ConfigError` naming every bad value.
    """
    env = os.environ if env is None else env
    if path is None:
        path = Path(env[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in env else DEFAULT_CONFIG
    data: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded
    elif f"{ENV_PREFIX}CONFIG" in env:
        raise ConfigError(f"{ENV_PREFIX}CONFIG names {path}, which does not exist")
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == f"{ENV_PREFIX}CONFIG":
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        if len(parts) < 2:
            continue
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: {part} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: cannot parse {raw!r}: {exc}") from exc
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


def defaults_as_yaml() -> str:
    """Every default as YAML, the content of ``config/wavegraph.yaml`` (home directory written as ``~``)."""
    data = Settings().model_dump(mode="json")
    home = str(Path.home())
    for key in ("state_dir", "cache_dir"):
        value = data["services"][key]
        if value == home or value.startswith(home + "/"):
            data["services"][key] = "~" + value[len(home) :]
    return yaml.safe_dump(data, sort_keys=False)
