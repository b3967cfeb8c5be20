"""Creating wavegraph's versioned topics with partitions, replication and retention from settings.

Replication follows the cluster: a topic gets ``kafka.replication_factor`` replicas and
``min.insync.replicas = kafka.min_insync_replicas``; left ``null`` (the default) they are derived from
the broker count N, the larger of ``kafka.brokers`` and the brokers the cluster's metadata lists:
``min(3, N)`` replicas and ``min(2, N)`` in-sync replicas (1 and 1 on one broker, 3 and 2 on three),
so an ``acks=all`` write survives the loss of any one broker of three. Counting the metadata too means
a cluster started with ``services up --brokers 3`` (or docker compose's ``cluster`` profile) replicates
its topics even when the settings still say one broker; counting the settings means a cluster that
is missing a broker refuses to create under-replicated topics instead of creating them silently.
Existing topics are left as they are (no reassignment).

**Retention: the log is the source of truth.** ``wavegraph.edges.v1`` and its tenant-keyed copy
``wavegraph.edges.by-tenant.v1`` are kept forever (``kafka.edges_retention_ms`` = -1): the graph job
rebuilds its tenants' state from the copy when it starts or takes over a partition, and ``wavegraph
replay`` rebuilds Neo4j from the original, so an edge that ages out would be missing from every
rebuild. ``wavegraph.transcripts.v1`` is kept forever too (``kafka.transcripts_retention_ms`` = -1):
it is small (text and segments, no audio) and ``wavegraph replay --target postgres`` rebuilds the
transcript tables from it. ``wavegraph.nodes.v1`` is a compacted changelog (keyed ``tenant/node``: the
latest analytics of each node stay, older versions go). Audio and dead letters keep
``kafka.retention_ms`` (7 days): raw audio is large and what is derived from it is kept in the
transcripts, so it stays for reprocessing within a week and for inspecting dead letters, not forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from wavegraph.clients import make_admin
from wavegraph.settings import KafkaSettings


@dataclass(frozen=True)
class PartitionState:
    """One partition of a topic as the cluster's metadata describes it."""

    partition: int
    leader: int  # -1: no leader right now
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class NoSuchTopic(KafkaError):
    """The cluster does not know the topic (or describing it failed with ``error_code``)."""

    def __init__(self, topic: str, error_code: int) -> None:
        super().__init__(f"topic {topic!r} cannot be described here (error {error_code})")
        self.topic, self.error_code = topic, error_code


async def describe_partitions(
    kafka: KafkaSettings, topic: str, *, request_timeout_ms: int = 30_000
) -> dict[int, PartitionState]:
    """The state of every partition of ``topic``, by partition number; :class:`NoSuchTopic` when the
    cluster does not know it (or has no partition of it)."""
    admin = make_admin(kafka, request_timeout_ms=request_timeout_ms)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise NoSuchTopic(topic, described["error_code"])
    return {
        p["partition"]: PartitionState(p["partition"], p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
        for p in described["partitions"]
    }


def topic_names(kafka: KafkaSettings) -> list[str]:
    t = kafka.topics
    return [t.audio, t.edges, t.edges_by_tenant, t.transcripts, t.nodes, t.dlq]


async def ensure_topics(
    kafka: KafkaSettings, names: list[str] | None = None, partitions: int | None = None
) -> list[str]:
    """Create the missing topics (all of wavegraph's by default); return the names created.

    A refusal by the broker other than "already exists" (e.g. a replication factor above the live
    brokers) raises the matching :class:`aiokafka.errors.KafkaError` with the broker's message."""
    wanted = names or topic_names(kafka)
    admin = make_admin(kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        cluster = await admin.describe_cluster()
        replicas, min_isr = kafka.replication(max(kafka.brokers, len(cluster["brokers"])))
        config = {
            "max.message.bytes": str(kafka.max_message_bytes),
            "min.insync.replicas": str(min_isr),
        }
        new = [
            NewTopic(
                name,
                num_partitions=partitions or kafka.partitions,
                replication_factor=replicas,
                topic_configs={**config, **retention_config(kafka, name)},
            )
            for name in wanted
            if name not in existing
        ]
        if new:
            try:
                response = await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            else:
                _raise_refusals(response.topic_errors)
        return [t.name for t in new]
    finally:
        await admin.close()


def retention_config(kafka: KafkaSettings, name: str) -> dict[str, str]:
    """How long topic ``name`` keeps its records (see the module docstring)."""
    t = kafka.topics
    if name in (t.edges, t.edges_by_tenant):
        return {"retention.ms": str(kafka.edges_retention_ms)}
    if name == t.transcripts:
        return {"retention.ms": str(kafka.transcripts_retention_ms)}
    if name == t.nodes:
        return {"cleanup.policy": "compact"}
    return {"retention.ms": str(kafka.retention_ms)}


def _raise_refusals(topic_errors: list[tuple[object, ...]]) -> None:
    """Raise the first per-topic error of a CreateTopics response, except "already exists" (a race
    with another creator is fine)."""
    for name, code, *message in topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            text = str(message[0]) if message and message[0] else ""
            raise for_code(int(code))(f"creating topic {name}: {text}".rstrip(": "))  # type: ignore[call-overload]


async def delete_topics(kafka: KafkaSettings, names: list[str]) -> None:
    admin = make_admin(kafka, request_timeout_ms=40_000)  # aiokafka's default
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
