"""Exactly-once transcripts: ``wavegraph run audio`` SIGKILLed again and again during a 20-window stream.

The worker runs as a real process (``runtime.instance`` 0, as a supervisor would restart it) on the real
broker and PostgreSQL; it is killed a short, random time after it last made progress, so the kills land
while windows are being transcribed, stored and published. A ``read_committed`` consumer of the transcript
topic must then see every window of the stream exactly once; PostgreSQL holds each window once too
(idempotent upserts), and the outbox owes nothing at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
import uuid
import wave
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from audio_kafka import (
    TENANT,
    committed,
    create_topics,
    drop_topics,
    end_offsets,
    fetch,
    pcm_records,
    read_topic,
    run_until,
    send,
    unique_settings,
)
from audio_kafka import record as audio_record

from wavegraph.clients import make_producer
from wavegraph.events import TranscriptEvent, encode
from wavegraph.processors.asr.samples import SPEECH_TEXTS, espeak_wav
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.settings import Settings
from wavegraph.sinks.outbox import stage
from wavegraph.streams.transactions import METADATA_PREFIX, OutboxRow

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]

WINDOWS = 20
WINDOW_S = 2.0
KILLS = 4


async def _last_words(proc: asyncio.subprocess.Process, log: Path) -> str:
    """The end of a worker's log (it is killed first)."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
    return log.read_text(errors="replace")[-3000:]


def _first_seconds(path: Path, seconds: float) -> Path:
    """The first ``seconds`` of a WAV file, as a new file beside it."""
    out = path.with_name(f"first-{path.name}")
    with wave.open(str(path), "rb") as src, wave.open(str(out), "wb") as dst:
        dst.setparams(src.getparams())
        frames = int(seconds * src.getframerate())
        assert src.getnframes() >= frames, f"the speech sample is shorter than {seconds} s"
        dst.writeframes(src.readframes(frames))
    return out


async def _diagnose(settings: Settings, stream: str) -> str:
    topic = settings.kafka.topics.transcripts
    committed_windows = sorted(e.window for e in await read_committed(settings, topic))
    everything = sorted(
        TranscriptEvent.model_validate_json(r.value).window for r in await read_topic(settings, topic, 1)
    )
    rows = await fetch(settings, "SELECT window_index FROM transcripts WHERE stream_id = $1", stream)
    outbox = await fetch(
        settings,
        "SELECT seq, partition FROM event_outbox WHERE consumer_group = $1",
        f"{settings.runtime.group_prefix}.audio",
    )
    offsets = await committed_meta(settings)
    return (
        f"committed {committed_windows}\nall {everything}\npg {sorted(r['window_index'] for r in rows)}\n"
        f"outbox {[tuple(r) for r in outbox]}\noffsets {offsets}"
    )


async def committed_meta(settings: Settings) -> object:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        return await admin.list_consumer_group_offsets(f"{settings.runtime.group_prefix}.audio")
    finally:
        await admin.close()


async def read_committed(settings: Settings, topic: str) -> list[TranscriptEvent]:
    """Every committed transcript event (aborted transactions are invisible to this consumer)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]  # the last stable offset
        out: list[TranscriptEvent] = []
        deadline = time.monotonic() + 30
        while await consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"could not read {topic} to its last stable offset"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [TranscriptEvent.model_validate_json(r.value) for r in records]
        return out
    finally:
        await consumer.stop()


def worker_env(settings: Settings) -> dict[str, str]:
    t = settings.kafka.topics
    return {
        **os.environ,
        "WAVEGRAPH_KAFKA__TOPICS__AUDIO": t.audio,
        "WAVEGRAPH_KAFKA__TOPICS__TRANSCRIPTS": t.transcripts,
        "WAVEGRAPH_KAFKA__TOPICS__DLQ": t.dlq,
        "WAVEGRAPH_RUNTIME__GROUP_PREFIX": settings.runtime.group_prefix,
        "WAVEGRAPH_RUNTIME__INSTANCE": "0",
        "WAVEGRAPH_ASR__WINDOW_S": str(WINDOW_S),
        "WAVEGRAPH_ASR__IDLE_FLUSH_S": "600",
        "WAVEGRAPH_ASR__THREADS": "1",
        "WAVEGRAPH_POSTGRES__DATABASE": settings.postgres.database,
        "WAVEGRAPH_METRICS__AUDIO_PORT": "0",
    }


async def test_sigkilled_workers_publish_every_window_exactly_once(
    audio_db: Settings, tmp_path: Path
) -> None:
    settings = unique_settings(audio_db, window_s=WINDOW_S, idle_flush_s=600.0)
    await create_topics(settings, partitions=1)
    stream = f"eo-{uuid.uuid4().hex[:8]}"
    text = " ".join(SPEECH_TEXTS.values())
    wav = _first_seconds(espeak_wav(text, tmp_path / "speech.wav"), WINDOWS * WINDOW_S)
    # 1 s chunks and the end-of-stream marker; windows close at up to WINDOW_S, between words.
    records = pcm_records(wav, stream, chunk_s=1.0)

    async def live() -> None:  # a live stream: two chunks a second, each acknowledged
        for record in records:
            await send(settings, [record])
            await asyncio.sleep(0.5)

    async def stored() -> list[int]:
        rows = await fetch(
            settings,
            "SELECT window_index FROM transcripts WHERE tenant = $1 AND stream_id = $2 ORDER BY 1",
            TENANT,
            stream,
        )
        return [r["window_index"] for r in rows]

    async def finished() -> bool:
        """Every record committed, and every stored window visible to a read_committed consumer."""
        if not sender.done() or (await committed(settings)).get(0) != len(records):
            return False
        windows = await stored()
        seen = {e.window for e in await read_committed(settings, topic)}
        return len(windows) >= WINDOWS and seen == set(windows)

    sender = asyncio.create_task(live())
    topic = settings.kafka.topics.transcripts
    rng = random.Random(7)
    env = worker_env(settings)
    cmd = [sys.executable, "-m", "wavegraph.cli", "-v", "run", "audio"]
    kills = 0
    try:
        while True:
            log = tmp_path / f"worker-{kills}.log"
            with log.open("wb") as out:
                proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=out, stderr=out)
            if kills == KILLS or await finished():
                break
            before = (await end_offsets(settings, topic, 1))[0]
            deadline = time.monotonic() + 90
            while (await end_offsets(settings, topic, 1))[0] == before:  # until this worker publishes
                assert proc.returncode is None, await _last_words(proc, log)
                if time.monotonic() > deadline:
                    state = await _diagnose(settings, stream)
                    raise AssertionError(f"no progress: {state}\n{await _last_words(proc, log)}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(rng.uniform(0.0, 1.5))  # mid-window: transcribing, storing or publishing
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            kills += 1
        deadline = time.monotonic() + 240
        while not await finished():
            assert proc.returncode is None, await _last_words(proc, log)
            if time.monotonic() > deadline:
                state = await _diagnose(settings, stream)
                raise AssertionError(
                    f"the last worker did not finish: {state}\n{await _last_words(proc, log)}"
                )
            await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        events = await read_committed(settings, topic)
        written = (await end_offsets(settings, topic, 1))[0]  # data, aborted data and markers
        windows = await stored()
        counts = Counter((e.stream_id, e.window) for e in events)
        assert windows == list(range(len(windows))), "PostgreSQL holds each window once, none missing"
        assert sorted(counts) == [(stream, w) for w in windows]
        assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}
        assert written > len(events), "no transaction was ever aborted or marked: not transactional"
        assert kills >= 2, f"only {kills} kill(s) landed while the stream was being transcribed"
        owed = await fetch(
            settings,
            "SELECT count(*) AS n FROM event_outbox WHERE consumer_group = $1",
            f"{settings.runtime.group_prefix}.audio",
        )
        assert owed[0]["n"] <= 1  # the last published row of the partition is kept, the rest pruned
    finally:
        sender.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await drop_topics(settings)


async def test_events_stored_but_never_published_are_published_once_by_the_next_owner(
    audio_db: Settings, embedder: TextEmbedder, tmp_path: Path
) -> None:
    """The state a worker leaves when it dies between the PostgreSQL commit and the Kafka commit, built
    for real: three outbox rows of partition 0, a committed offset whose metadata says seq 1 went out (its
    event is in the topic). The next worker publishes seqs 2 and 3, once, and never seq 1 again."""
    settings = unique_settings(audio_db, window_s=WINDOW_S, idle_flush_s=600.0)
    await create_topics(settings, partitions=1)
    group, topic = f"{settings.runtime.group_prefix}.audio", settings.kafka.topics.transcripts
    tp = TopicPartition(settings.kafka.topics.audio, 0)
    old = [
        TranscriptEvent(
            tenant=TENANT,
            stream_id="crashed",
            window=w,
            start_s=2.0 * w,
            end_s=2.0 * w + 2,
            text=f"w{w}",
            segments=[],
            model="tiny.en",
            device="cpu",
            processing_ms=1.0,
            xrt=0.5,
        )
        for w in range(3)
    ]
    rows = [OutboxRow(seq, topic, b"acme/crashed", encode(e)) for seq, e in enumerate(old, start=1)]
    pool = await asyncpg.create_pool(settings.postgres.url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await stage(conn, group, tp, rows)
        producer = make_producer(settings.kafka, transactional_id=f"test-crashed-{uuid.uuid4().hex[:8]}")
        await producer.start()
        try:  # the dead worker's last transaction: seq 1's event and the offsets, with wg.outbox=1
            async with producer.transaction():
                await producer.send(topic, value=rows[0].value, key=rows[0].key)
                await producer.send_offsets_to_transaction({tp: (0, f"{METADATA_PREFIX}1")}, group)
        finally:
            await producer.stop()
        stream = f"next-{uuid.uuid4().hex[:6]}"
        wav = _first_seconds(espeak_wav(SPEECH_TEXTS["harbour"], tmp_path / "h.wav"), 4.0)
        records = pcm_records(wav, stream, chunk_s=1.0)
        await send(settings, records)

        async def done() -> bool:
            return (await committed(settings)).get(0) == len(records)

        stats = await run_until(settings, done, embedder=embedder)
        events = await read_committed(settings, topic)
        crashed = Counter(e.window for e in events if e.stream_id == "crashed")
        assert crashed == {0: 1, 1: 1, 2: 1}
        assert {e.stream_id for e in events} == {"crashed", stream}
        assert stats["stored"] >= 1
        left = await pool.fetch("SELECT seq FROM event_outbox WHERE consumer_group = $1 ORDER BY seq", group)
        assert [r["seq"] for r in left] == [3 + stats["stored"]]  # published rows pruned, the last kept
    finally:
        await pool.close()
        await drop_topics(settings)


async def test_a_partition_of_dead_letters_only_is_committed_too(
    audio_db: Settings, embedder: TextEmbedder
) -> None:
    """Only records the decoder refuses (a tenant without an API key) on the topic: the
    transactional commit covers their partition, although the sink never saw one of its records (it
    used to be left out of every transaction: uncommitted for as long as the processor ran)."""
    settings = unique_settings(audio_db, window_s=WINDOW_S, idle_flush_s=600.0)
    await create_topics(settings, 2)
    try:
        stream = f"bad-{uuid.uuid4().hex[:8]}"
        bad = [audio_record(b"\0" * 3200, stream, seq, tenant="nobody") for seq in range(3)]
        await send(settings, bad, partition=1)

        async def committed_to_the_end() -> bool:
            return (await committed(settings)).get(1) == len(bad)

        stats = await run_until(settings, committed_to_the_end, embedder=embedder, timeout=60)
        assert stats["dead_letters"] == len(bad)
    finally:
        await drop_topics(settings)
