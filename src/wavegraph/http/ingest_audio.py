"""``POST /v1/ingest/audio``: one chunk of a tenant's audio stream, produced to ``wavegraph.audio.v1``.

The body is a WAV file (``Content-Type: audio/wav`` or ``audio/x-wav``, ``audio/wave``) or raw
little-endian 16-bit PCM (``audio/L16``, ``audio/pcm`` or ``application/octet-stream``; its rate and
channels from ``sample_rate``/``channels``, or from the ``rate``/``channels`` parameters of ``audio/L16``).
The stream coordinates come as query parameters or headers (``X-Stream-Id``, ``X-Seq``, ``X-Eos``):
``stream_id`` (1–128 characters, no NUL), ``seq`` (0, 1, 2 … per stream), ``eos`` (``true`` on the
end-of-stream chunk, whose body may be empty). The tenant is the API key's.

Answers, in the order they are checked: 401 (no/unknown key); 415 (another content type); 413 (a body
over ``read.max_audio_bytes``, or over ``runtime.max_event_bytes``, which the audio processor would
dead-letter); 422 naming the field (bad ``stream_id``/``seq``/``sample_rate``/``channels``, or audio
that does not decode: a corrupt or truncated WAV, a rate outside 8–48 kHz — the same checks as the
processor, so what is accepted here is transcribed there); 429 when the send queue is full; 503 when
Kafka does not acknowledge; **202** ``{"accepted": 1, "stream_id", "seq", "bytes"}`` once the broker
acknowledged the record (acks=all). The record is keyed ``tenant/stream_id`` (one stream, one
partition, in order); its headers are :meth:`wavegraph.events.AudioMeta.to_headers`, as
``wavegraph produce audio`` writes them.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wavegraph.errors import InvalidEvent
from wavegraph.events import AudioMeta
from wavegraph.http.backpressure import retry_after_header
from wavegraph.http.batch import media_type
from wavegraph.http.context import KAFKA_RETRY_AFTER_S, ApiContext, context
from wavegraph.http.errors import ApiError
from wavegraph.http.ingest import read_body
from wavegraph.http.responses import ORJSONResponse
from wavegraph.processors.asr.audio import decode_audio

WAV_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})
PCM_TYPES = frozenset({"audio/l16", "audio/pcm", "application/octet-stream"})


async def ingest_audio(request: Request) -> Response:
    ctx = context(request)
    tenant = ctx.auth.tenant_for(request.headers)
    content_type = request.headers.get("content-type", "")
    media = media_type(content_type)
    if media in WAV_TYPES:
        encoding = "wav"
    elif media in PCM_TYPES:
        encoding = "pcm_s16le"
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{media or 'no content type'!r}: send audio/wav, or raw 16-bit PCM as audio/L16 or "
            "application/octet-stream",
        )
    limit = min(ctx.settings.read.max_audio_bytes, ctx.settings.runtime.max_event_bytes)
    body = await read_body(request, limit)
    meta = _meta(request, tenant, encoding, content_type)
    if body or not meta.eos:
        try:
            decode_audio(
                body,
                encoding=meta.encoding,
                sample_rate=meta.sample_rate,
                channels=meta.channels,
                max_s=ctx.settings.asr.max_stream_s,
            )
        except InvalidEvent as exc:
            raise ApiError(422, "invalid_audio", exc.reason, field="body") from None
    if not ctx.send_queue.try_acquire(1):
        seconds = retry_after_header(ctx.settings.runtime.default_retry_after_s)
        raise ApiError(
            429, "send_queue_full", "too many records wait for Kafka; retry later", {"Retry-After": seconds}
        )
    try:
        async with asyncio.timeout(ctx.ack_timeout_s):
            future = await ctx.producer.send(
                ctx.settings.kafka.topics.audio,
                value=body,
                key=f"{tenant}/{meta.stream_id}".encode(),
                headers=meta.to_headers(),
            )
            await future
    except (TimeoutError, KafkaError) as exc:
        seconds = retry_after_header(KAFKA_RETRY_AFTER_S)
        raise ApiError(
            503,
            "kafka_unavailable",
            f"Kafka did not acknowledge the chunk: {exc!r}",
            {"Retry-After": seconds},
        ) from None
    finally:
        ctx.send_queue.release(1)
    body_out = {"accepted": 1, "stream_id": meta.stream_id, "seq": meta.seq, "bytes": len(body)}
    return ORJSONResponse(body_out, 202)


def _meta(request: Request, tenant: str, encoding: str, content_type: str) -> AudioMeta:
    """The chunk's :class:`AudioMeta` from query parameters, then ``X-`` headers; 422 naming the field."""
    params = _content_type_params(content_type)

    def pick(name: str, header: str) -> str | None:
        return request.query_params.get(name) or request.headers.get(header) or params.get(name)

    values: dict[str, Any] = {"tenant": tenant, "encoding": encoding}
    for name, header in (
        ("stream_id", "x-stream-id"),
        ("seq", "x-seq"),
        ("sample_rate", "x-sample-rate"),
        ("channels", "x-channels"),
    ):
        value = pick(name, header)
        if value is not None:
            values[name] = value
    if "sample_rate" not in values and "rate" in params:
        values["sample_rate"] = params["rate"]
    eos = pick("eos", "x-eos")
    values["eos"] = (eos or "false").lower() in ("true", "1", "yes")
    try:
        return AudioMeta.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "(query)"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ApiError(422, "invalid_audio", f"{field}: {message}", field=field) from None


def _content_type_params(content_type: str) -> dict[str, str]:
    """``audio/L16; rate=16000; channels=1`` → ``{"rate": "16000", "channels": "1"}``."""
    out: dict[str, str] = {}
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip() and value.strip():
            out[key.strip().lower()] = value.strip().strip('"')
    return out


async def start(ctx: ApiContext, stack: AsyncExitStack) -> None:
    """Nothing to open: the chunk goes through the shared producer."""


ROUTES = [Route("/v1/ingest/audio", ingest_audio, methods=["POST"], name="ingest_audio")]

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

OPENAPI: dict[str, Any] = {
    "/v1/ingest/audio": {
        "post": {
            "summary": "Publish one chunk of an audio stream (WAV or raw 16-bit PCM)",
            "operationId": "ingestAudio",
            "security": [{"bearer": []}, {"apiKey": []}],
            "parameters": [
                {
                    "name": "stream_id",
                    "in": "query",
                    "required": True,
                    "description": "the audio stream (1–128 characters); or the X-Stream-Id header",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                    "example": "call-42",
                },
                {
                    "name": "seq",
                    "in": "query",
                    "required": True,
                    "description": "0, 1, 2 … per stream; or the X-Seq header",
                    "schema": {"type": "integer", "minimum": 0},
                    "example": 0,
                },
                {
                    "name": "eos",
                    "in": "query",
                    "description": "true on the end-of-stream chunk (its body may be empty)",
                    "schema": {"type": "boolean", "default": False},
                },
                {
                    "name": "sample_rate",
                    "in": "query",
                    "description": "raw PCM only: samples per second",
                    "schema": {"type": "integer", "minimum": 8000, "maximum": 48000, "default": 16000},
                },
                {
                    "name": "channels",
                    "in": "query",
                    "description": "raw PCM only: 1 or 2",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2, "default": 1},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                    "audio/L16": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "202": {
                    "description": "the broker acknowledged the chunk",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "accepted": {"type": "integer"},
                                    "stream_id": {"type": "string"},
                                    "seq": {"type": "integer"},
                                    "bytes": {"type": "integer"},
                                },
                                "required": ["accepted", "stream_id", "seq", "bytes"],
                            },
                            "example": {"accepted": 1, "stream_id": "call-42", "seq": 0, "bytes": 64044},
                        }
                    },
                },
                "401": {"description": "no or unknown API key", "content": _ERROR},
                "413": {"description": "the body is larger than the limit", "content": _ERROR},
                "415": {"description": "not WAV or raw PCM", "content": _ERROR},
                "422": {"description": "a bad parameter or audio that does not decode", "content": _ERROR},
                "429": {"description": "the send queue is full (Retry-After)", "content": _ERROR},
                "503": {"description": "Kafka did not acknowledge (Retry-After)", "content": _ERROR},
            },
        }
    }
}
