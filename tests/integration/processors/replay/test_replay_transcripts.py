"""``wavegraph replay --target postgres|faiss|all`` on the real Kafka, PostgreSQL and Whisper.

One run of the real audio processor (exactly-once: its transcript events are published in Kafka
transactions) transcribes jfk.wav for two tenants into a database of this module's own; then a tenant's
transcripts, segments and vectors are wiped and replayed from the transcript topic, and its FAISS rows
are wiped and rebuilt from PostgreSQL: the checksums come back equal to those before the wipe, and the
other tenant is neither changed nor written.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from scratch_db import migrated_database

from wavegraph.clients import make_producer, pg_pool
from wavegraph.commands.replay import replay
from wavegraph.events import Segment, TranscriptEvent, encode
from wavegraph.processors.asr.samples import jfk_wav
from wavegraph.processors.audio.cursor import StreamPosition
from wavegraph.processors.audio.pipeline import run_audio
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.processors.replay.checksum import StoreChecksum
from wavegraph.processors.replay.transcripts import transcript_checksum
from wavegraph.processors.replay.vector_index import index_checksums, open_index
from wavegraph.settings import Settings
from wavegraph.sinks.transcripts import TranscriptStore
from wavegraph.streams.publish import wav_chunks
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

DATABASE = "wavegraph_test_replay"
PARTITIONS = 2


@dataclass
class Run:
    settings: Settings
    a: str
    b: str
    windows: dict[str, int]


def _scoped(base: Settings, index_dir: Path) -> Settings:
    """Own topics, group, two tenants (they own API keys), 4 s windows, a FAISS directory of its own."""
    run = uuid.uuid4().hex[:10]
    names = ("audio", "transcripts", "dlq", "edges")
    topics = base.kafka.topics.model_copy(update={n: f"test.replay-tx.{run}.{n}" for n in names})
    keys = {**base.http.api_keys, f"k-a-{run}": f"tx-a-{run}", f"k-b-{run}": f"tx-b-{run}"}
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topics": topics}),
            "runtime": base.runtime.model_copy(update={"group_prefix": f"test.replay-tx.{run}"}),
            "http": base.http.model_copy(update={"api_keys": keys}),
            "asr": base.asr.model_copy(update={"threads": 1, "window_s": 4.0, "idle_flush_s": 1.0}),
            "vector": base.vector.model_copy(update={"index_dir": index_dir}),
        }
    )


def tenants(settings: Settings) -> tuple[str, str]:
    run = settings.runtime.group_prefix.rsplit(".", 1)[-1]
    return f"tx-a-{run}", f"tx-b-{run}"


async def _fetch(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _transcribe(settings: Settings, embedder: TextEmbedder) -> dict[str, int]:
    """jfk.wav as 2 s chunks for each tenant through ``wavegraph run audio``, until both streams ended."""
    a, b = tenants(settings)
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.kafka.topics.audio, c.pcm, key=f"{t}/s".encode(), headers=c.meta.to_headers()
            )
            for t in (a, b)
            for c in wav_chunks(jfk_wav(settings), t, "s", 2.0)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    stop = asyncio.Event()
    task = asyncio.create_task(run_audio(settings, stop, embedder=embedder))
    ended = (
        "SELECT count(*) FROM embeddings WHERE tenant = ANY($1::text[]) "
        "AND (metadata->'position'->>'final')::bool"
    )
    deadline = time.monotonic() + 120
    try:
        while (await _fetch(settings, ended, [a, b]))[0][0] < 2:
            assert not task.done(), f"the processor stopped: {task.result()}"
            assert time.monotonic() < deadline, "the audio processor did not finish both streams"
            await asyncio.sleep(0.25)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    rows = await _fetch(settings, "SELECT tenant, count(*) AS n FROM transcripts GROUP BY tenant")
    return {r["tenant"]: r["n"] for r in rows}


@pytest.fixture(scope="module")
def run(services: Settings) -> Iterator[Run]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = _scoped(asyncio.run(migrated_database(services, DATABASE)), Path(tmp) / "faiss")
        t = settings.kafka.topics
        asyncio.run(ensure_topics(settings.kafka, [t.audio, t.transcripts, t.dlq, t.edges], PARTITIONS))
        try:
            a, b = tenants(settings)
            yield Run(settings, a, b, asyncio.run(_transcribe(settings, _embedder())))
        finally:
            asyncio.run(delete_topics(settings.kafka, [t.audio, t.transcripts, t.dlq, t.edges]))


_EMBEDDER: list[TextEmbedder] = []


def _embedder() -> TextEmbedder:
    if not _EMBEDDER:
        _EMBEDDER.append(TextEmbedder())
    return _EMBEDDER[0]


async def checksums(settings: Settings, *names: str) -> list[StoreChecksum]:
    pool = await pg_pool(settings.postgres, max_size=1)
    try:
        return [await transcript_checksum(pool, t) for t in names]
    finally:
        await pool.close()


async def wipe_transcripts(settings: Settings, tenant: str) -> None:
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        await conn.execute("DELETE FROM transcripts WHERE tenant = $1", tenant)  # segments cascade
        await conn.execute("DELETE FROM embeddings WHERE tenant = $1 AND kind = 'transcript'", tenant)
    finally:
        await conn.close()


async def newest_write(settings: Settings, tenant: str) -> object:
    rows = await _fetch(settings, "SELECT max(updated_at) FROM embeddings WHERE tenant = $1", tenant)
    return rows[0][0]


def test_a_wiped_tenant_is_rebuilt_from_the_transcript_topic_and_no_other_tenant_is_written(run: Run) -> None:
    s, a, b = run.settings, run.a, run.b
    assert run.windows[a] == run.windows[b] >= 3, run.windows
    before_a, before_b = asyncio.run(checksums(s, a, b))
    assert before_a.counts["transcripts"] == before_a.counts["vectors"] == run.windows[a]
    assert before_a.counts["segments"] >= run.windows[a] - 1
    b_written = asyncio.run(newest_write(s, b))
    asyncio.run(wipe_transcripts(s, a))
    [wiped] = asyncio.run(checksums(s, a))
    result = asyncio.run(replay(s, tenant=a, into="live", target="postgres", embedder=_embedder()))
    after_a, after_b = asyncio.run(checksums(s, a, b))
    again = asyncio.run(replay(s, tenant=a, into="live", target="postgres", embedder=_embedder()))
    assert wiped.counts == {"transcripts": 0, "segments": 0, "vectors": 0}
    assert after_a == before_a, "text, segments, vectors and the stream cursor come back from the topic"
    assert after_b == before_b
    assert asyncio.run(newest_write(s, b)) == b_written, "the other tenant's rows were not written"
    [row] = result["tenants"]
    assert row["before"]["digest"] == wiped.digest and row["after"]["digest"] == before_a.digest
    assert (result["written"], result["other_tenants"]) == (run.windows[a], run.windows[b])
    assert (result["refused"], result["skipped_invalid"], result["without_cursor"]) == (0, 0, 0)
    assert result["records"] == run.windows[a] + run.windows[b], "each committed window read once"
    assert again["equal"] is True, "replaying twice leaves what replaying once left"
    positions = asyncio.run(_positions(s, a))
    assert positions.final and positions.next_window == run.windows[a], "a restart resumes after the stream"


async def _positions(settings: Settings, tenant: str) -> StreamPosition:
    async with await TranscriptStore.open(settings.postgres) as store:
        return (await store.positions([(tenant, "s")]))[(tenant, "s")]


def test_a_wiped_tenant_comes_back_in_the_faiss_index_rebuilt_from_postgres(run: Run) -> None:
    s, a, b = run.settings, run.a, run.b
    built = asyncio.run(replay(s, tenant=None, into="live", target="faiss"))
    by = {r["tenant"]: r for r in built["tenants"]}
    assert by[a]["after"]["counts"]["rows"] == run.windows[a] and built["rows"] == sum(run.windows.values())

    async def wipe() -> dict[str, StoreChecksum]:
        index = await open_index(s)
        try:
            ids = [key for t, kind, key, _ in index.rows() if t == a and kind == "transcript"]
            index.delete(a, "transcript", ids)
            index.save()
            return await index_checksums(index, [a, b])
        finally:
            index.close()

    wiped = asyncio.run(wipe())
    result = asyncio.run(replay(s, tenant=a, into="live", target="faiss"))
    after = asyncio.run(_index_checksums(s, a, b))
    assert wiped[a].counts == {"rows": 0} and wiped[b].as_dict() == by[b]["after"]
    [row] = result["tenants"]
    assert row["before"]["digest"] == wiped[a].digest and row["equal"] is False
    assert after[a].as_dict() == by[a]["after"], "the tenant's rows (ids and vectors) are back"
    assert after[b].as_dict() == by[b]["after"]


async def _index_checksums(settings: Settings, *names: str) -> dict[str, StoreChecksum]:
    index = await open_index(settings)
    try:
        return await index_checksums(index, names)
    finally:
        index.close()


def test_all_replays_the_graph_then_the_transcripts_then_the_index(run: Run) -> None:
    result = asyncio.run(replay(run.settings, tenant=run.a, into="live", target="all", embedder=_embedder()))
    assert [r["target"] for r in result["results"]] == ["neo4j", "postgres", "faiss"]
    assert result["equal"] is True, "nothing changed since the last replay"


def test_an_event_without_a_cursor_is_stored_without_one(run: Run) -> None:
    """An event published before ``TranscriptEvent.cursor`` existed: stored, counted, no position."""
    s = run.settings
    tenant = f"{run.a}-old"
    event = TranscriptEvent(
        tenant=tenant,
        stream_id="old",
        window=0,
        start_s=0.0,
        end_s=4.0,
        text="an old window",
        segments=[Segment(start_s=0.0, end_s=4.0, text="an old window")],
        model="tiny.en",
        device="cpu",
        processing_ms=1.0,
        xrt=0.1,
    )
    value = orjson.dumps(event.model_dump(mode="json", exclude={"cursor"}))  # as published before it
    assert b"cursor" not in value and b'"cursor":null' in encode(event)

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap, acks="all")
        await producer.start()
        try:
            await (await producer.send(s.kafka.topics.transcripts, value, key=b"old/old"))
        finally:
            await producer.stop()

    asyncio.run(publish())
    result = asyncio.run(replay(s, tenant=tenant, into="live", target="postgres", embedder=_embedder()))
    assert (result["written"], result["without_cursor"]) == (1, 1)
    [meta] = asyncio.run(_fetch(s, "SELECT metadata FROM embeddings WHERE tenant = $1", tenant))
    assert "position" not in meta["metadata"] and '"window": 0' in meta["metadata"]


def test_an_ephemeral_rebuild_finds_the_tenant_whose_transcripts_drifted_from_the_log(run: Run) -> None:
    """A throwaway PostgreSQL rebuilt from the topic, compared with the live tables; nothing live written."""
    s, a, b = run.settings, run.a, run.b

    async def drift() -> None:  # a text changed behind the log's back
        conn = await asyncpg.connect(s.postgres.url)
        try:
            await conn.execute("UPDATE transcripts SET text = text || ' (edited)' WHERE tenant = $1", a)
        finally:
            await conn.close()

    asyncio.run(drift())
    drifted_a, before_b = asyncio.run(checksums(s, a, b))
    try:
        result = asyncio.run(
            replay(s, tenant=None, into="ephemeral", target="postgres", embedder=_embedder())
        )
        live_a, live_b = asyncio.run(checksums(s, a, b))
    finally:
        asyncio.run(replay(s, tenant=a, into="live", target="postgres", embedder=_embedder()))
    by = {r["tenant"]: r for r in result["tenants"]}
    assert {a, b} <= set(by)
    assert by[b]["equal"] is True and by[b]["replayed"]["digest"] == before_b.digest
    assert by[a]["equal"] is False and by[a]["live"]["digest"] == drifted_a.digest
    assert by[a]["replayed"]["counts"] == drifted_a.counts
    assert result["equal"] is False and result["into"] == "ephemeral"
    assert (live_a, live_b) == (drifted_a, before_b), "the live tables were only read"


def test_all_into_ephemeral_compares_each_live_store_with_its_throwaway_rebuild(run: Run) -> None:
    """Neo4j, PostgreSQL and a FAISS index built from the throwaway tables, none of them live."""
    result = asyncio.run(
        replay(run.settings, tenant=run.a, into="ephemeral", target="all", embedder=_embedder())
    )
    by = {r["target"]: r for r in result["results"]}
    assert list(by) == ["neo4j", "postgres", "faiss"] and {r["into"] for r in by.values()} == {"ephemeral"}
    assert by["postgres"]["tenants"][0]["replayed"]["counts"]["transcripts"] == run.windows[run.a]
    assert by["faiss"]["tenants"][0]["replayed"]["counts"] == {"rows": run.windows[run.a]}
    assert result["equal"] is True, result


def test_the_command_replays_transcripts_and_compares_a_throwaway_faiss_index(run: Run) -> None:
    """``wavegraph replay --target postgres|faiss`` as a command (settings from the environment)."""
    from typer.testing import CliRunner

    from wavegraph.cli import app

    s = run.settings
    env = {
        "WAVEGRAPH_KAFKA__TOPICS__TRANSCRIPTS": s.kafka.topics.transcripts,
        "WAVEGRAPH_POSTGRES__DATABASE": s.postgres.database,
        "WAVEGRAPH_VECTOR__INDEX_DIR": str(s.vector.index_dir),
        "COLUMNS": "200",
    }
    asyncio.run(replay(s, tenant=None, into="live", target="faiss"))
    table = CliRunner().invoke(app, ["replay", "--target", "postgres", "--tenant", run.b], env=env)
    assert table.exit_code == 0, table.output
    n = run.windows[run.b]
    assert f"into live postgres: {n} windows written, 0 refused, 0 invalid skipped, 0 without" in table.output
    assert run.b in table.output and "yes" in table.output  # the store already held what the log says
    same = CliRunner().invoke(app, ["replay", "--target", "faiss", "--into", "ephemeral", "--json"], env=env)
    assert same.exit_code == 0, same.output
    assert json.loads(same.output)["equal"] is True, "the live index matches PostgreSQL"

    async def drop_b() -> None:
        index = await open_index(s)
        try:
            index.delete(run.b, "transcript", [k for t, _, k, _ in index.rows() if t == run.b])
            index.save()
        finally:
            index.close()

    asyncio.run(drop_b())
    before = asyncio.run(_index_checksums(s, run.a, run.b))
    drift = CliRunner().invoke(app, ["replay", "--target", "faiss", "--into", "ephemeral"], env=env)
    assert drift.exit_code == 1, drift.output
    assert "rebuilt a throwaway copy of the FAISS index" in drift.output
    assert asyncio.run(_index_checksums(s, run.a, run.b)) == before, "the live index was only read"
