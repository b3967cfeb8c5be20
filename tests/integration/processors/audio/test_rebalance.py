"""Two audio processors in one consumer group, real Kafka, PostgreSQL and Whisper tiny.en.

Four streams (JFK's 11 s in 2 s chunks), two per partition, arrive in three parts. Processor A takes
the first part; B joins (a rebalance hands one partition over while every stream's window is open);
both take the second part; A leaves (B takes everything) before the last part and the end markers
arrive. Every window is transcribed exactly once: one event per (tenant, stream, window) on the
transcripts topic, and each stream's words are all there (a chunk lost in a handover would drop words).
A marker stream (one short chunk and its end marker) closes each part on each partition, so a part is
known to be consumed once its markers are stored.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import numpy as np
import pytest
from audio_kafka import (
    TENANT,
    Processor,
    committed,
    create_topics,
    drop_topics,
    end_offsets,
    fetch,
    final_streams,
    pcm_bytes,
    pcm_records,
    read_topic,
    record,
    send,
    unique_settings,
)

from wavegraph.events import TranscriptEvent
from wavegraph.processors.asr.engine import Transcriber
from wavegraph.processors.asr.samples import JFK_TEXT, jfk_wav
from wavegraph.processors.asr.wer import wer
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

PARTITIONS = 2
PARTS = [(0, 3), (3, 5), (5, 7)]
"""Which of a stream's 7 records (6 chunks of JFK, the end marker) each part sends."""


@pytest.fixture(scope="module")
def transcriber(audio_db: Settings) -> Iterator[Transcriber]:
    """One real Whisper shared by both processors (one worker thread: they take turns)."""
    settings = audio_db.model_copy(update={"asr": audio_db.asr.model_copy(update={"threads": 1})})
    with Transcriber(settings) as engine:
        engine.warm_up()
        yield engine


@pytest.fixture
async def settings_2p(audio_db: Settings) -> AsyncIterator[Settings]:
    """Two partitions; no idle flush, so each stream is one window closed by its end marker."""
    settings = unique_settings(audio_db, idle_flush_s=600.0)
    await create_topics(settings, PARTITIONS)
    yield settings
    await drop_topics(settings)


async def test_a_processor_joining_then_leaving_loses_and_duplicates_no_window(
    settings_2p: Settings, embedder: TextEmbedder, transcriber: Transcriber
) -> None:
    settings = settings_2p
    uid = uuid.uuid4().hex[:8]
    streams = {p: [f"jfk{p}{i}-{uid}" for i in range(2)] for p in range(PARTITIONS)}
    jfk = jfk_wav(settings)
    chunks = {s: pcm_records(jfk, s) for ss in streams.values() for s in ss}
    assert all(len(c) == 7 for c in chunks.values())
    quiet = pcm_bytes((np.random.default_rng(0).standard_normal(8000) * 0.001).astype(np.float32))
    markers: list[str] = []

    async def send_part(k: int) -> list[str]:
        begin, end = PARTS[k]
        names = []
        for p, ss in streams.items():
            marker = f"marker{k}-{p}-{uid}"
            names.append(marker)
            part = [r for s in ss for r in chunks[s][begin:end]]
            part += [record(quiet, marker, 0), record(b"", marker, 1, eos=True)]
            await send(settings, part, partition=p)
        return names

    def part_done(names: list[str]) -> Callable[[], Awaitable[bool]]:
        async def done() -> bool:
            return await final_streams(settings, names) == set(names)

        return done

    everything = [s for ss in streams.values() for s in ss]

    async def all_done() -> bool:
        end = await end_offsets(settings, settings.kafka.topics.audio, PARTITIONS)
        stored = await final_streams(settings, everything + markers)
        return stored == set(everything + markers) and await committed(settings) == end

    a = Processor(settings, embedder=embedder, transcriber=transcriber)
    b = Processor(settings, embedder=embedder, transcriber=transcriber)
    async with a:
        markers += await send_part(0)
        await a.wait(part_done(markers), timeout=120)
        async with b:  # B joins while every stream's window is open
            markers += await send_part(1)
            await b.wait(part_done(markers), timeout=180)
            await a.close()  # A leaves the group: B takes its partition mid-stream
            markers += await send_part(2)
            await b.wait(all_done, timeout=180)

    events = [
        TranscriptEvent.model_validate_json(r.value)
        for r in await read_topic(settings, settings.kafka.topics.transcripts, PARTITIONS)
    ]
    counts = Counter((e.tenant, e.stream_id, e.window) for e in events)
    assert {k: n for k, n in counts.items() if n > 1} == {}  # no duplicate event
    assert set(counts) == {(TENANT, s, 0) for s in everything + markers}  # no window lost
    for stream in everything:
        (row,) = await fetch(
            settings,
            "SELECT text, end_s FROM transcripts WHERE tenant = $1 AND stream_id = $2",
            TENANT,
            stream,
        )
        assert row["end_s"] == pytest.approx(11.0, abs=0.1)
        assert wer(JFK_TEXT, row["text"]) <= 0.10, row["text"]
    assert a.stats["consumed"] > 0 and b.stats["consumed"] > 0  # both really took part
    sent = sum(len(c) for c in chunks.values()) + 2 * len(markers)
    assert a.stats["consumed"] + b.stats["consumed"] > sent  # open windows were handed over, replayed
    assert a.stats["stored"] + b.stats["stored"] == len(everything + markers)
