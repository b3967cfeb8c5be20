"""At-least-once across restarts: offsets of an open window stay uncommitted, a restart completes the
window from the replay, and a replay of what was stored transcribes and publishes nothing again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from audio_kafka import (
    TENANT,
    committed,
    create_topics,
    drop_topics,
    fetch,
    new_group,
    pcm_records,
    read_topic,
    run_until,
    send,
    unique_settings,
)

from wavegraph.events import TranscriptEvent
from wavegraph.processors.asr.samples import SPEECH_TEXTS, espeak_wav
from wavegraph.processors.asr.wer import wer
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


@pytest.fixture
async def settings_1p(audio_db: Settings) -> AsyncIterator[Settings]:
    """One partition (offset = sequence number), and no idle flush: only the end marker closes a window."""
    settings = unique_settings(audio_db, idle_flush_s=600.0)
    await create_topics(settings, partitions=1)
    yield settings
    await drop_topics(settings)


async def windows(settings: Settings, stream: str) -> list[dict[str, Any]]:
    rows = await fetch(
        settings,
        "SELECT t.window_index, t.start_s, t.end_s, t.text, t.created_at, e.metadata FROM transcripts t "
        "JOIN embeddings e ON e.tenant = t.tenant AND e.kind = 'transcript' AND e.id = t.event_id "
        "WHERE t.tenant = $1 AND t.stream_id = $2 ORDER BY t.window_index",
        TENANT,
        stream,
    )
    return [{**dict(r), "metadata": orjson.loads(r["metadata"])} for r in rows]


async def events(settings: Settings) -> list[TranscriptEvent]:
    records = await read_topic(settings, settings.kafka.topics.transcripts, 1)
    return [TranscriptEvent.model_validate_json(r.value) for r in records]


def no_asr_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("wavegraph-asr")]


async def test_stop_mid_window_then_restart_and_replay(
    settings_1p: Settings, embedder: TextEmbedder, tmp_path: Path
) -> None:
    settings, stream = settings_1p, "restart-library"
    chunks = pcm_records(espeak_wav(SPEECH_TEXTS["library"], tmp_path / "library.wav"), stream)
    audio, eos = chunks[:-1], chunks[-1]  # 19 chunks of 2 s (36 s), then the end marker
    await send(settings, audio)

    # 1. The first 30 s window closes (cut inside a chunk); the rest stays open, its offsets uncommitted.
    async def first_window_committed() -> bool:
        stored = await windows(settings, stream)
        return (
            bool(stored)
            and (await committed(settings)).get(0) == stored[0]["metadata"]["position"]["next_seq"]
        )

    stats = await run_until(settings, first_window_committed, embedder=embedder)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # shutdown leaves no task behind
    assert no_asr_threads()
    (first,) = await windows(settings, stream)
    position = first["metadata"]["position"]
    assert 0 < position["next_seq"] < len(audio) and position["skip"] > 0 and not position["final"]
    assert await committed(settings) == {0: position["next_seq"]}  # the chunk cut in two is replayed
    assert stats["consumed"] == len(audio) and stats["stored"] == 1
    assert len(await events(settings)) == 1

    # 2. Restart in the same group: the replay from the committed offset completes window 1 exactly.
    await send(settings, [eos])

    async def stream_done() -> bool:
        return len(await windows(settings, stream)) == 2 and (await committed(settings)).get(0) == len(chunks)

    stats = await run_until(settings, stream_done, embedder=embedder)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    w0, w1 = await windows(settings, stream)
    assert w0["created_at"] == first["created_at"]  # window 0 was not written again
    assert w1["start_s"] == pytest.approx(w0["end_s"])
    assert w1["end_s"] == pytest.approx(36.16, abs=0.1)
    assert w1["metadata"]["position"]["final"]
    assert wer(SPEECH_TEXTS["library"], f"{w0['text']} {w1['text']}") <= 0.15
    assert stats["stored"] == 1 and stats["ignored"] == 0
    assert [(e.window, e.text) for e in await events(settings)] == [(0, w0["text"]), (1, w1["text"])]

    # 3. A full replay (a new group, as if every commit had been lost): nothing is transcribed again.
    replay = new_group(settings)

    async def replayed() -> bool:
        return (await committed(replay)).get(0) == len(chunks)

    stats = await run_until(replay, replayed, embedder=embedder)
    assert stats["ignored"] == len(chunks) and stats["windows"] == 0 and stats["published"] == 0
    assert [w["created_at"] for w in await windows(settings, stream)] == [w0["created_at"], w1["created_at"]]
    assert len(await events(settings)) == 2
