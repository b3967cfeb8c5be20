"""Publishing edges and audio to Kafka: what ``wavegraph produce`` and the tests use."""

from __future__ import annotations

import csv
import io
import time
import wave
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from wavegraph.clients import make_producer
from wavegraph.events import AudioMeta, edge_record_key
from wavegraph.settings import KafkaSettings

Progress = Callable[[int], None]


def edge_lines(lines: Iterable[str], tenant: str) -> Iterator[bytes]:
    """Turn JSON lines (sent verbatim) or CSV rows (header with at least src,dst) into record values.

    CSV columns ``tenant, rel, weight, ts, op, event_id`` are optional; ``tenant`` defaults to the
    given one and ``ts`` to now. Blank lines are skipped. JSON lines are not validated here: the
    processor validates, so malformed lines reach the dead-letter topic with their reason.
    """
    it = iter(lines)
    first = next((ln for ln in it if ln.strip()), None)
    if first is None:
        return
    if first.lstrip().startswith(("{", "[")) or not _looks_like_csv_header(first):
        yield first.rstrip("\n").encode()
        for ln in it:
            if ln.strip():
                yield ln.rstrip("\n").encode()
        return
    reader = csv.DictReader(io.StringIO(first), skipinitialspace=True)
    header = reader.fieldnames or []
    for row in csv.DictReader(it, fieldnames=header, skipinitialspace=True):
        if not any(row.values()):
            continue
        obj: dict[str, object] = {"tenant": row.get("tenant") or tenant, "src": row["src"], "dst": row["dst"]}
        if row.get("rel"):
            obj["rel"] = row["rel"]
        obj["weight"] = float(row["weight"]) if row.get("weight") else 1.0
        obj["ts"] = float(row["ts"]) if row.get("ts") else time.time()
        for key in ("op", "event_id"):
            if row.get(key):
                obj[key] = row[key]
        yield orjson.dumps(obj)


def _looks_like_csv_header(line: str) -> bool:
    cols = {c.strip().lower() for c in line.split(",")}
    return {"src", "dst"} <= cols


def edge_key(value: bytes) -> bytes | None:
    """The partitioning key of an edge record (:func:`wavegraph.events.edge_record_key`, the key the
    HTTP API uses too); None when the value is not an edge object (the processor dead-letters it)."""
    try:
        obj = orjson.loads(value)
        return edge_record_key(obj["tenant"], obj["src"], obj.get("rel", "LINKS"), obj["dst"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


async def publish_values(
    kafka: KafkaSettings,
    topic: str,
    values: Iterable[bytes],
    progress: Progress | None = None,
    key: Callable[[bytes], bytes | None] | None = None,
) -> int:
    """Send every value (acks=all, idempotent producer); return the count the broker acknowledged.

    ``key`` computes each record's key (e.g. :func:`edge_key`); without it records are unkeyed.
    """
    producer = make_producer(kafka, linger_ms=10)
    await producer.start()
    try:
        sent = 0
        pending = []
        for value in values:
            pending.append(await producer.send(topic, value=value, key=key(value) if key else None))
            if len(pending) >= 5000:
                for fut in pending:
                    await fut
                sent += len(pending)
                if progress:
                    progress(len(pending))
                pending.clear()
        for fut in pending:
            await fut
        sent += len(pending)
        if progress and pending:
            progress(len(pending))
        return sent
    finally:
        await producer.stop()


@dataclass(frozen=True)
class AudioRecord:
    """One audio record to publish: its headers' metadata and its raw PCM value (the processor's
    decoded counterpart is :class:`wavegraph.processors.audio.decoder.AudioChunk`)."""

    meta: AudioMeta
    pcm: bytes


def wav_chunks(path: Path, tenant: str, stream_id: str, chunk_s: float = 2.0) -> Iterator[AudioRecord]:
    """Split a 16-bit PCM WAV into raw-PCM chunks of ``chunk_s`` seconds, then an end-of-stream marker."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV can be chunked (got {8 * wav.getsampwidth()} bit)")
        rate, channels = wav.getframerate(), wav.getnchannels()
        frames_per_chunk = max(1, int(rate * chunk_s))
        seq = 0
        while True:
            data = wav.readframes(frames_per_chunk)
            if not data:
                break
            meta = AudioMeta(tenant=tenant, stream_id=stream_id, seq=seq, sample_rate=rate, channels=channels)
            yield AudioRecord(meta, data)
            seq += 1
    yield AudioRecord(
        AudioMeta(tenant=tenant, stream_id=stream_id, seq=seq, sample_rate=rate, channels=channels, eos=True),
        b"",
    )


async def publish_audio(
    kafka: KafkaSettings, chunks: Iterable[AudioRecord], progress: Progress | None = None
) -> int:
    """Send audio chunks keyed by stream id (one partition per stream keeps them in order)."""
    producer = make_producer(kafka, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for chunk in chunks:
            futures.append(
                await producer.send(
                    kafka.topics.audio,
                    value=chunk.pcm,
                    key=f"{chunk.meta.tenant}/{chunk.meta.stream_id}".encode(),
                    headers=chunk.meta.to_headers(),
                )
            )
            if progress:
                progress(1)
        for fut in futures:
            await fut
        return len(futures)
    finally:
        await producer.stop()
