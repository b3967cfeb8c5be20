"""Creating wavegraph's versioned topics with partitions and retention from settings."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from wavegraph.settings import KafkaSettings


def topic_names(kafka: KafkaSettings) -> list[str]:
    t = kafka.topics
    return [t.audio, t.edges, t.transcripts, t.nodes, t.dlq]


async def ensure_topics(
    kafka: KafkaSettings, names: list[str] | None = None, partitions: int | None = None
) -> list[str]:
    """Create the missing topics (all of wavegraph's by default); return the names created."""
    wanted = names or topic_names(kafka)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        config = {
            "retention.ms": str(kafka.retention_ms),
            "max.message.bytes": str(kafka.max_message_bytes),
        }
        new = [
            NewTopic(
                name,
                num_partitions=partitions or kafka.partitions,
                replication_factor=1,
                topic_configs=config,
            )
            for name in wanted
            if name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in new]
    finally:
        await admin.close()


async def delete_topics(kafka: KafkaSettings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
