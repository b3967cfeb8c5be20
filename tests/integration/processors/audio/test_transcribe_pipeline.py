"""``wavegraph run audio`` end to end: real Kafka, Whisper tiny.en, PostgreSQL/pgvector.

One processor run consumes a topic holding every scenario at once (good streams next to bad audio),
then each test checks one aspect of what it produced.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_kafka import (
    TENANT,
    Record,
    committed,
    create_topics,
    drop_topics,
    end_offsets,
    fetch,
    float_wav_bytes,
    pcm_bytes,
    pcm_records,
    read_topic,
    record,
    run_until,
    send,
    unique_settings,
    wav_bytes,
)

from wavegraph.events import TranscriptEvent, parse_dlq_headers, stable_id
from wavegraph.processors.asr.samples import JFK_TEXT, SPEECH_TEXTS, espeak_wav, jfk_wav
from wavegraph.processors.asr.wer import wer
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

PARTITIONS = 3
RATE = 16_000
MAX_STREAM_S = 40.0
EXPECTED_WINDOWS = {"jfk_chunks": 1, "jfk_file": 1, "library": 2, "gap": 2, "overlong": 1}
EXPECTED_REASONS = {
    "corrupt": "audio: not a WAV file",
    "truncated": "audio: truncated WAV",
    "zero": "audio: zero-length payload",
    "nan": "audio: samples contain NaN or infinity",
    "rate_header": "header sample_rate: Input should be less than or equal to 48000",
    "rate_wav": "audio: sample rate 4000 Hz is outside 8000-48000 Hz",
    "no_seq": "header seq: Field required",
    "tenant": "tenant: unknown tenant 'initech'",
    "oversized": "oversized: ",
    "overlong": "would exceed the limit of 40 s at seq 1",
}
"""A dead letter's reason contains the text here."""


@dataclass
class Run:
    settings: Settings
    ids: dict[str, str]
    windows: dict[str, list[Any]]
    events: list[TranscriptEvent]
    reasons: dict[str, str]
    committed: dict[int, int]
    end: dict[int, int]
    stats: dict[str, int]

    def text(self, role: str) -> str:
        return " ".join(r["text"] for r in self.windows[role])


def _records(ids: dict[str, str], workdir: Path, settings: Settings) -> list[Record]:
    jfk = jfk_wav(settings)
    library = espeak_wav(SPEECH_TEXTS["library"], workdir / "library.wav")
    harbour = espeak_wav(SPEECH_TEXTS["harbour"], workdir / "harbour.wav")
    rng = np.random.default_rng(5)
    quiet = (rng.standard_normal(RATE) * 0.001).astype(np.float32)

    gap = pcm_records(harbour, ids["gap"])
    whole = wav_bytes(quiet)
    gap[2] = record(whole[: len(whole) // 2], ids["gap"], 2, encoding="wav")  # truncated mid-data
    nan = quiet.copy()
    nan[100] = np.nan
    long_8k = (rng.standard_normal(int(MAX_STREAM_S * 8000)) * 0.001).astype(np.float32)
    bad = [
        record(b"\x00not a wav file" * 64, ids["corrupt"], 0, encoding="wav"),
        record(b"", ids["zero"], 0),
        record(float_wav_bytes(nan), ids["nan"], 0, encoding="wav"),
        record(pcm_bytes(quiet), ids["rate_header"], 0, sample_rate=96000),
        record(wav_bytes(quiet[:4000], rate=4000), ids["rate_wav"], 0, encoding="wav"),
        record(pcm_bytes(quiet), ids["no_seq"], None),
        record(pcm_bytes(quiet), ids["tenant"], 0, tenant="initech"),
        record(pcm_bytes(np.zeros(600_000, np.float32)), ids["oversized"], 0),
    ]
    overlong = [
        record(pcm_bytes(quiet), ids["overlong"], 0),
        record(pcm_bytes(long_8k), ids["overlong"], 1, sample_rate=8000),  # 1 s + 40 s > 40 s
        record(b"", ids["overlong"], 2, eos=True),
    ]
    return [
        *pcm_records(jfk, ids["jfk_chunks"]),
        record(jfk.read_bytes(), ids["jfk_file"], 0, encoding="wav", eos=True),
        *pcm_records(library, ids["library"]),
        *gap,
        *overlong,
        *bad,
    ]


async def _scenario(base: Settings, embedder: TextEmbedder) -> Run:
    settings = unique_settings(base, idle_flush_s=1.0, max_stream_s=MAX_STREAM_S)
    uid = uuid.uuid4().hex[:8]
    ids = {role: f"{role}-{uid}" for role in [*EXPECTED_WINDOWS, *EXPECTED_REASONS]}
    ids["truncated"] = ids["gap"]  # a bad chunk inside a good stream
    await create_topics(settings, PARTITIONS)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await send(settings, _records(ids, Path(tmp), settings))
        by_id = {ids[r]: r for r in EXPECTED_WINDOWS}
        n_dead = len(EXPECTED_REASONS)

        async def done() -> bool:
            rows = await fetch(
                settings,
                "SELECT stream_id, count(*) AS n FROM transcripts WHERE tenant = $1 "
                "AND stream_id = ANY($2::text[]) GROUP BY stream_id",
                TENANT,
                list(by_id),
            )
            have = {by_id[r["stream_id"]]: r["n"] for r in rows}
            dead = sum((await end_offsets(settings, settings.kafka.topics.dlq, PARTITIONS)).values())
            return have == EXPECTED_WINDOWS and dead >= n_dead

        stats = await run_until(settings, done, embedder=embedder, timeout=150)
        windows: dict[str, list[Any]] = {}
        for role in EXPECTED_WINDOWS:
            windows[role] = await fetch(
                settings,
                "SELECT * FROM transcripts WHERE tenant = $1 AND stream_id = $2 ORDER BY window_index",
                TENANT,
                ids[role],
            )
        events = [
            TranscriptEvent.model_validate_json(r.value)
            for r in await read_topic(settings, settings.kafka.topics.transcripts, PARTITIONS)
        ]
        reasons: dict[str, str] = {}
        for rec in await read_topic(settings, settings.kafka.topics.dlq, PARTITIONS):
            original = {k: v.decode() for k, v in rec.headers if not k.startswith("wg.")}
            reasons[f"{original['stream_id']}#{original.get('seq')}"] = parse_dlq_headers(rec.headers)[
                "reason"
            ]
        return Run(
            settings=settings,
            ids=ids,
            windows=windows,
            events=events,
            reasons=reasons,
            committed=await committed(settings),
            end=await end_offsets(settings, settings.kafka.topics.audio, PARTITIONS),
            stats=stats,
        )
    finally:
        await drop_topics(settings)


@pytest.fixture(scope="module")
def run(audio_db: Settings, embedder: TextEmbedder) -> Iterator[Run]:
    yield asyncio.run(_scenario(audio_db, embedder))


def test_jfk_through_kafka(run: Run) -> None:
    assert wer(JFK_TEXT, run.text("jfk_chunks")) <= 0.10
    assert wer(JFK_TEXT, run.text("jfk_file")) <= 0.10
    (row,) = run.windows["jfk_chunks"]
    assert row["window_index"] == 0 and row["start_s"] == 0.0
    assert row["end_s"] == pytest.approx(11.0, abs=0.1)
    assert row["model"] == "tiny.en" and row["device"] == "cpu" and row["xrt"] > 0


def test_espeak_speech_across_two_windows(run: Run) -> None:
    first, second = run.windows["library"]
    assert wer(SPEECH_TEXTS["library"], run.text("library")) <= 0.15
    assert 27.0 <= first["end_s"] <= 30.0  # cut at a quiet point of the last 3 s of a full window
    assert second["start_s"] == pytest.approx(first["end_s"])
    assert second["end_s"] == pytest.approx(36.16, abs=0.1)


def test_two_second_chunks_and_one_file_give_the_same_words(run: Run) -> None:
    assert wer(run.text("jfk_file"), run.text("jfk_chunks")) <= 0.05
    assert wer(run.text("jfk_chunks"), run.text("jfk_file")) <= 0.05


def test_each_kind_of_bad_audio_is_a_dead_letter_with_its_reason(run: Run) -> None:
    seqs = {"truncated": 2, "overlong": 1, "no_seq": None}
    for role, reason in EXPECTED_REASONS.items():
        key = f"{run.ids[role]}#{seqs.get(role, 0)}"
        assert key in run.reasons, f"{role}: no dead letter; got {sorted(run.reasons)}"
        assert reason in run.reasons[key], (role, run.reasons[key])
    assert len(run.reasons) == len(EXPECTED_REASONS)


def test_streams_keep_flowing_past_bad_chunks(run: Run) -> None:
    before, after = run.windows["gap"]  # chunk 2 of 7 was a truncated WAV
    assert before["end_s"] == pytest.approx(4.0)
    assert after["start_s"] == pytest.approx(6.0)  # the lost chunk's time is estimated, not dropped
    assert before["text"] and after["text"]
    harbour = SPEECH_TEXTS["harbour"]
    assert wer(harbour, run.text("gap")) < 0.5
    (overlong,) = run.windows["overlong"]  # the first second was kept, the chunk over the limit refused
    assert overlong["end_s"] == pytest.approx(1.0)


def test_one_event_per_stored_window_with_absolute_segment_times(run: Run) -> None:
    stored = {(r["stream_id"], r["window_index"]): r for rows in run.windows.values() for r in rows}
    assert len(run.events) == len(stored) == sum(EXPECTED_WINDOWS.values())
    for event in run.events:
        row = stored[(event.stream_id, event.window)]
        assert event.event_id == stable_id(TENANT, event.stream_id, event.window) == row["event_id"]
        assert (event.start_s, event.end_s, event.text) == (row["start_s"], row["end_s"], row["text"])
        assert event.model == "tiny.en" and event.device == "cpu"
        assert event.xrt > 0 and event.processing_ms > 0
        for seg in event.segments:
            assert event.start_s - 0.01 <= seg.start_s <= seg.end_s <= event.end_s + 1.0
    second = next(e for e in run.events if e.stream_id == run.ids["library"] and e.window == 1)
    assert second.segments and second.segments[0].start_s >= 27.0


def test_offsets_committed_to_the_end_once_everything_is_stored(run: Run) -> None:
    assert run.committed == run.end
    assert run.stats["stored"] == run.stats["published"] == sum(EXPECTED_WINDOWS.values())
    assert run.stats["dead_letters"] == len(EXPECTED_REASONS)


async def test_embeddings_are_stored_and_searchable(run: Run, embedder: TextEmbedder) -> None:
    streams = [run.ids[r] for r in EXPECTED_WINDOWS]
    segments = await fetch(
        run.settings,
        "SELECT embedding FROM transcript_segments WHERE tenant = $1 AND stream_id = ANY($2::text[])",
        TENANT,
        streams,
    )
    assert sum(len(e.segments) for e in run.events) == len(segments) > 0
    for row in segments:
        assert np.linalg.norm(row["embedding"].to_numpy()) == pytest.approx(1.0, abs=1e-3)
    query = embedder.embed(["ask not what your country can do for you"])[0]
    nearest = await fetch(
        run.settings,
        "SELECT metadata->>'stream_id' AS stream FROM embeddings WHERE tenant = $1 AND kind = 'transcript' "
        "AND metadata->>'stream_id' = ANY($2::text[]) ORDER BY embedding <=> $3 LIMIT 2",
        TENANT,
        streams,
        query,
    )
    assert {r["stream"] for r in nearest} == {run.ids["jfk_chunks"], run.ids["jfk_file"]}
