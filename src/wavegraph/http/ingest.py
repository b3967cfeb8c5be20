"""``POST /v1/ingest/edges``: authenticated, validated edge batches produced to ``wavegraph.edges.v1``.

Answers, in the order they are checked:

- 401 no/unknown API key; 415 a content type other than JSON or NDJSON;
- 413 a body over ``http.max_body_bytes`` or a batch larger than the whole send queue;
- 422 ``invalid_event`` naming every bad line (up to 20) and field; 403 ``forbidden_tenant``;
- 429 ``breaker_open`` (``Retry-After`` = seconds until the Neo4j breaker half-opens) or
  ``send_queue_full`` (``Retry-After`` = ``runtime.default_retry_after_s``). Validation comes first: a
  malformed request is the client's to fix whatever the state of Neo4j, so it gets its 4xx, not a 429
  that would make it retry the same bad batch;
- 503 ``kafka_unavailable`` when the broker did not acknowledge every event within the ack timeout
  (some may have been written: a retry is safe because event ids are deterministic and sinks merge);
- 202 ``{"accepted": n}`` only once the broker acknowledged all ``n`` events (acks=all, idempotent).

A batch is all-or-nothing at validation: one bad event rejects the request and nothing is produced.
Records are keyed by :attr:`EdgeEvent.record_key` (a hash of tenant, src, rel, dst), as ``wavegraph produce
edges`` keys them, so all events of one edge share a partition and stay in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from starlette.requests import Request
from starlette.responses import Response

from wavegraph import metrics
from wavegraph.events import EdgeEvent, encode
from wavegraph.http.backpressure import SendQueue, retry_after_header
from wavegraph.http.batch import (
    MAX_REPORTED,
    NDJSON_TYPES,
    LineError,
    is_json,
    media_type,
    parse_json,
    parse_ndjson,
)
from wavegraph.http.context import KAFKA_RETRY_AFTER_S, ApiContext, context
from wavegraph.http.errors import ApiError
from wavegraph.http.responses import ORJSONResponse


async def ingest_edges(request: Request) -> Response:
    ctx = context(request)
    tenant = ctx.auth.tenant_for(request.headers)
    media = media_type(request.headers.get("content-type"))
    if media in NDJSON_TYPES:
        parse = parse_ndjson
    elif is_json(media):
        parse = parse_json
    else:
        raise ApiError(
            415, "unsupported_media_type", f"{media!r}: send application/json or application/x-ndjson"
        )
    body = await read_body(request, ctx.settings.http.max_body_bytes)
    batch = parse(body, ctx.settings.runtime.max_event_bytes)
    if batch.invalid:
        raise _line_errors(422, "invalid_event", batch.errors, batch.invalid)
    foreign = [
        LineError(line, f"tenant: {ev.tenant!r} is not the tenant of the API key ({tenant!r})", "tenant")
        for line, ev in batch.events
        if ev.tenant != tenant
    ]
    if foreign:
        raise _line_errors(403, "forbidden_tenant", foreign[:MAX_REPORTED], len(foreign))

    await _refuse_when_breaker_open(ctx)
    if ctx.send_queue.full:
        raise _queue_full(ctx)
    events = [ev for _, ev in batch.events]
    if events:
        await produce(ctx, events)
    return ORJSONResponse({"accepted": len(events)}, 202)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


async def produce(ctx: ApiContext, events: Sequence[EdgeEvent]) -> None:
    """Send ``events`` to the edges topic; return once the broker acknowledged every one of them.

    Holds ``len(events)`` send-queue slots; each is freed when the broker answered for its event
    (or at once for events never handed to the producer). Raises a 429/413/503 :class:`ApiError`.
    """
    queue, n = ctx.send_queue, len(events)
    if n > queue.capacity:
        raise ApiError(
            413,
            "batch_too_large",
            f"{n} events exceed the send queue ({queue.capacity}); split the batch",
        )
    if not queue.try_acquire(n):
        raise _queue_full(ctx)
    topic = ctx.settings.kafka.topics.edges
    futures: list[asyncio.Future[Any]] = []
    on_delivered = _releaser(queue)
    try:
        async with asyncio.timeout(ctx.ack_timeout_s):
            for ev in events:
                fut = await ctx.producer.send(topic, value=encode(ev), key=ev.record_key)
                fut.add_done_callback(on_delivered)
                futures.append(fut)
            await asyncio.wait(futures)  # does not cancel the futures if the timeout fires
    except TimeoutError:
        raise _kafka_unavailable(f"no acknowledgement from Kafka within {ctx.ack_timeout_s:g}s") from None
    except KafkaError as exc:
        raise _kafka_unavailable(f"Kafka refused the batch: {exc!r}") from None
    finally:
        queue.release(n - len(futures))
    failed = [err for fut in futures if (err := fut.exception()) is not None]
    if failed:
        raise _kafka_unavailable(f"Kafka did not acknowledge {len(failed)} of {n} events: {failed[0]!r}")


def _releaser(queue: SendQueue) -> Callable[[asyncio.Future[Any]], None]:
    def release(fut: asyncio.Future[Any]) -> None:
        queue.release(1)
        if not fut.cancelled():
            fut.exception()  # retrieved here, so a failure is never logged as "never retrieved"

    return release


async def _refuse_when_breaker_open(ctx: ApiContext) -> None:
    wait = await ctx.breaker.open_for()
    if wait is None:
        return
    metrics.HTTP_REJECTED.labels(reason="breaker_open").inc()
    seconds = retry_after_header(wait)
    raise ApiError(
        429,
        "breaker_open",
        f"Neo4j is failing; the ingest breaker is open for {seconds}s more",
        {"Retry-After": seconds},
        retry_after=int(seconds),
    )


def _queue_full(ctx: ApiContext) -> ApiError:
    metrics.HTTP_REJECTED.labels(reason="send_queue_full").inc()
    seconds = retry_after_header(ctx.settings.runtime.default_retry_after_s)
    queue = ctx.send_queue
    return ApiError(
        429,
        "send_queue_full",
        f"{queue.in_flight} of {queue.capacity} events are waiting for Kafka; retry later",
        {"Retry-After": seconds},
        retry_after=int(seconds),
    )


def _kafka_unavailable(detail: str) -> ApiError:
    seconds = retry_after_header(KAFKA_RETRY_AFTER_S)
    return ApiError(503, "kafka_unavailable", detail, {"Retry-After": seconds}, retry_after=int(seconds))


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body exceeds {limit} bytes; split the batch", limit=limit)


def _line_errors(status: int, error: str, errors: Sequence[LineError], total: int) -> ApiError:
    first = errors[0]
    more = f" (and {total - 1} more)" if total > 1 else ""
    return ApiError(
        status,
        error,
        f"line {first.line}: {first.reason}{more}",
        errors=[e.as_dict() for e in errors],
        invalid=total,
    )
