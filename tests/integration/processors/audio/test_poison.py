"""Poison windows and chunks, and the open-stream cap, against the real Kafka, PostgreSQL and Whisper.

Whisper tiny.en never fails on a real window and never writes a NUL character, so those two faults
are injected by :class:`FaultyTranscriber`, a thin wrapper around the real engine: a window of exactly
``FAIL_S`` seconds raises, and one of ``NUL_S`` seconds gets a NUL in its (real) transcript, which the
real PostgreSQL then refuses. Everything else is real: the records travel through Kafka, the dead
letters are read back from the real dead-letter topic, the sequence-number jump of 10¹⁸ (which once
made the assembler build a tuple of 10¹⁸ numbers) and the stream-count cap need no injection at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from audio_kafka import (
    TENANT,
    Processor,
    Record,
    committed,
    create_topics,
    drop_topics,
    end_offsets,
    fetch,
    pcm_bytes,
    pcm_records,
    read_topic,
    record,
    send,
    unique_settings,
)

from wavegraph.events import TranscriptEvent, parse_dlq_headers
from wavegraph.processors.asr.engine import Transcriber, Transcript
from wavegraph.processors.asr.samples import JFK_TEXT, jfk_wav
from wavegraph.processors.asr.wer import wer
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

RATE = 16_000
FAIL_S = 1.3
NUL_S = 1.7
JUMP = 10**18


class FaultyTranscriber:
    """The real engine, except for windows of exactly ``FAIL_S`` s (raise) or ``NUL_S`` s (NUL text)."""

    def __init__(self, real: Transcriber) -> None:
        self.real = real
        self.model, self.device, self.batch_size = real.model, real.device, real.batch_size

    async def transcribe(self, samples: np.ndarray, *, start_s: float = 0.0) -> Transcript:
        if samples.size == int(FAIL_S * RATE):
            raise RuntimeError("injected: whisper_full() failed")
        transcript = await self.real.transcribe(samples, start_s=start_s)
        if samples.size == int(NUL_S * RATE):
            return Transcript(
                transcript.text + " \x00",
                transcript.segments,
                transcript.model,
                transcript.device,
                transcript.start_s,
                transcript.audio_s,
                transcript.processing_ms,
                transcript.xrt,
            )
        return transcript


@pytest.fixture(scope="module")
def transcriber(audio_db: Settings) -> Iterator[Transcriber]:
    """One real Whisper for the module's runs (closed at its end: no ASR thread outlives it)."""
    settings = audio_db.model_copy(update={"asr": audio_db.asr.model_copy(update={"threads": 1})})
    with Transcriber(settings) as engine:
        engine.warm_up()
        yield engine


def quiet(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * RATE)) * 0.001).astype(np.float32)


@dataclass
class Outcome:
    settings: Settings
    ids: dict[str, str]
    stored: dict[str, list[Any]]
    """By role."""
    events: list[TranscriptEvent]
    dead: dict[str, tuple[str, bytes]]
    """``stream_id#seq`` → (reason, original value)."""
    committed: dict[int, int]
    end: dict[int, int]
    stats: dict[str, int]


async def _stored(settings: Settings, streams: list[str]) -> dict[str, list[Any]]:
    rows = await fetch(
        settings,
        "SELECT * FROM transcripts WHERE tenant = $1 AND stream_id = ANY($2::text[]) "
        "ORDER BY stream_id, window_index",
        TENANT,
        streams,
    )
    out: dict[str, list[Any]] = {s: [] for s in streams}
    for row in rows:
        out[row["stream_id"]].append(row)
    return out


async def _outcome(settings: Settings, ids: dict[str, str], stats: dict[str, int]) -> Outcome:
    dead: dict[str, tuple[str, bytes]] = {}
    for rec in await read_topic(settings, settings.kafka.topics.dlq, 1):
        original = {k: v.decode() for k, v in rec.headers if not k.startswith("wg.")}
        reason = parse_dlq_headers(rec.headers)["reason"]
        dead[f"{original['stream_id']}#{original['seq']}"] = (reason, rec.value or b"")
    rows = await _stored(settings, list(ids.values()))
    return Outcome(
        settings=settings,
        ids=ids,
        stored={role: rows[sid] for role, sid in ids.items()},
        events=[
            TranscriptEvent.model_validate_json(r.value)
            for r in await read_topic(settings, settings.kafka.topics.transcripts, 1)
        ],
        dead=dead,
        committed=await committed(settings),
        end=await end_offsets(settings, settings.kafka.topics.audio, 1),
        stats=stats,
    )


async def _counts(settings: Settings, ids: dict[str, str]) -> tuple[dict[str, int], int]:
    stored = await _stored(settings, list(ids.values()))
    by_role = {role: len(stored[sid]) for role, sid in ids.items()}
    dead = sum((await end_offsets(settings, settings.kafka.topics.dlq, 1)).values())
    return by_role, dead


# --- poison windows and chunks --------------------------------------------------------------------


async def _poison(base: Settings, embedder: TextEmbedder, engine: Transcriber) -> Outcome:
    settings = unique_settings(base, idle_flush_s=1.0)
    uid = uuid.uuid4().hex[:8]
    ids = {role: f"{role}-{uid}" for role in ("jfk", "fail", "nul", "jump", "after")}
    jfk = jfk_wav(settings)
    phase1: list[Record] = [
        record(pcm_bytes(quiet(FAIL_S)), ids["fail"], 0),
        record(b"", ids["fail"], 1, eos=True),
        *pcm_records(jfk, ids["jfk"]),
        record(pcm_bytes(quiet(NUL_S, 1)), ids["nul"], 0),
        record(b"", ids["nul"], 1, eos=True),
        record(pcm_bytes(quiet(1.0, 2)), ids["jump"], 0),
        record(pcm_bytes(quiet(1.0, 3)), ids["jump"], JUMP, eos=True),
    ]
    await create_topics(settings, 1)
    try:
        await send(settings, phase1)
        proc = Processor(settings, embedder=embedder, transcriber=FaultyTranscriber(engine))
        async with proc:

            async def phase1_done() -> bool:
                stored, dead = await _counts(settings, ids)
                return stored["jfk"] == 1 and stored["jump"] == 2 and dead >= 4

            await proc.wait(phase1_done, timeout=120)
            await send(settings, pcm_records(jfk, ids["after"]))  # the same processor goes on

            async def phase2_done() -> bool:
                stored, _ = await _counts(settings, ids)
                offsets = await committed(settings)
                return stored["after"] == 1 and offsets == await end_offsets(
                    settings, settings.kafka.topics.audio, 1
                )

            await proc.wait(phase2_done, timeout=120)
        return await _outcome(settings, ids, proc.stats)
    finally:
        await drop_topics(settings)


@pytest.fixture(scope="module")
def poison(audio_db: Settings, embedder: TextEmbedder, transcriber: Transcriber) -> Outcome:
    return asyncio.run(_poison(audio_db, embedder, transcriber))


def test_a_window_whisper_cannot_transcribe_is_dead_lettered_with_its_reason(poison: Outcome) -> None:
    stream = poison.ids["fail"]
    for seq in (0, 1):  # the chunk and the end marker it completes
        reason, _ = poison.dead[f"{stream}#{seq}"]
        assert reason.startswith(f"asr: window 0 of {TENANT}/{stream} (0.0-1.3 s, seq 0-0)"), reason
        assert "RuntimeError('injected: whisper_full() failed')" in reason
    assert poison.dead[f"{stream}#0"][1] == pcm_bytes(quiet(FAIL_S))  # the original bytes
    assert poison.stored["fail"] == []


def test_a_transcript_postgres_refuses_is_dead_lettered_and_never_published(poison: Outcome) -> None:
    stream = poison.ids["nul"]
    for seq in (0, 1):
        reason, _ = poison.dead[f"{stream}#{seq}"]
        assert reason.startswith(f"postgres: window 0 of {TENANT}/{stream}"), reason
        assert 'invalid byte sequence for encoding "UTF8": 0x00' in reason
    assert poison.stored["nul"] == []
    assert stream not in {e.stream_id for e in poison.events}


def test_the_rest_is_transcribed_and_the_processor_keeps_running(poison: Outcome) -> None:
    assert len(poison.dead) == 4 and poison.stats["dead_letters"] == 4
    assert poison.stats["refused_windows"] == 2
    for role in ("jfk", "after"):  # "after" was sent once the poison was dead-lettered
        (row,) = poison.stored[role]
        assert wer(JFK_TEXT, row["text"]) <= 0.10
    published = sorted((e.stream_id, e.window) for e in poison.events)
    expected = sorted(
        (poison.ids[role], i) for role, n in (("jfk", 1), ("jump", 2), ("after", 1)) for i in range(n)
    )
    assert published == expected
    assert poison.committed == poison.end


def test_a_sequence_jump_of_ten_to_the_eighteen_is_a_gap(poison: Outcome) -> None:
    before, after = poison.stored["jump"]
    assert (before["start_s"], before["end_s"]) == (0.0, pytest.approx(1.0))
    assert after["start_s"] == pytest.approx(float(JUMP))  # the missing chunks are estimated 1 s long


# --- the open-stream cap --------------------------------------------------------------------------


async def _capped(base: Settings, embedder: TextEmbedder, engine: Transcriber) -> Outcome:
    settings = unique_settings(base, idle_flush_s=3.0, max_open_streams=2)
    uid = uuid.uuid4().hex[:8]
    ids = {role: f"{role}-{uid}" for role in ("a", "b", "c")}
    one = [pcm_bytes(quiet(1.0, seed)) for seed in range(4)]
    records = [
        record(one[0], ids["a"], 0),
        record(one[1], ids["b"], 0),
        record(one[2], ids["c"], 0),  # a and b hold audio: refused
        record(b"", ids["a"], 1, eos=True),  # a closes: room for c
        record(one[3], ids["c"], 1),
        record(b"", ids["c"], 2, eos=True),
        record(b"", ids["b"], 1, eos=True),
    ]
    await create_topics(settings, 1)
    try:
        await send(settings, records)
        proc = Processor(settings, embedder=embedder, transcriber=engine)
        async with proc:

            async def done() -> bool:
                stored, dead = await _counts(settings, ids)
                end = await end_offsets(settings, settings.kafka.topics.audio, 1)
                return stored == {"a": 1, "b": 1, "c": 1} and dead >= 1 and await committed(settings) == end

            await proc.wait(done, timeout=120)
        return await _outcome(settings, ids, proc.stats)
    finally:
        await drop_topics(settings)


def test_a_new_stream_over_the_open_stream_cap_is_dead_lettered(
    audio_db: Settings, embedder: TextEmbedder, transcriber: Transcriber
) -> None:
    run = asyncio.run(_capped(audio_db, embedder, transcriber))
    c = run.ids["c"]
    assert list(run.dead) == [f"{c}#0"]
    reason, value = run.dead[f"{c}#0"]
    assert reason.startswith("audio: too many open streams: 2 streams hold audio (asr.max_open_streams = 2)")
    assert value == pcm_bytes(quiet(1.0, 2))
    (row,) = run.stored["c"]  # c's later chunks were taken once a closed; chunk 0 is a gap
    assert row["start_s"] == pytest.approx(1.0) and row["end_s"] == pytest.approx(2.0)
    assert [len(run.stored[k]) for k in ("a", "b")] == [1, 1]
    assert run.committed == run.end and run.stats["dead_letters"] == 1
    assert run.stats["chunks_refused"] == 1 and run.stats["streams_evicted"] == 0
