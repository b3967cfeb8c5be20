"""The producer every wavegraph component uses: idempotent, acks=all, large records allowed."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from wavegraph.settings import KafkaSettings


def make_producer(
    kafka: KafkaSettings,
    *,
    linger_ms: int = 5,
    client_id: str = "wavegraph",
    request_timeout_ms: int = 40_000,
) -> AIOKafkaProducer:
    """An unstarted producer; ``await producer.start()`` (or enter it in an ``AsyncExitStack``).

    ``request_timeout_ms`` also bounds how long ``send`` waits for a topic's metadata."""
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_request_size=kafka.max_message_bytes,
        max_batch_size=min(1024 * 1024, kafka.max_message_bytes),
        request_timeout_ms=request_timeout_ms,
    )
