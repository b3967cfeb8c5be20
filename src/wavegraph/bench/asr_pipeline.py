"""``wavegraph bench asr`` pipeline mode: Whisper through Kafka vs bare pywhispercpp, on the same audio.

In one run, per model and clip by clip (interleaved, so load changes on a shared machine hit every mode
alike):

* ``bare``: pywhispercpp ``Model.transcribe`` on the whole clip, nothing around it;
* ``pipeline``: the whole clip as one WAV event (with the end marker) on a fresh audio topic, through
  the running transcription processor (``wavegraph run audio``: decode, windows, Whisper, embeddings,
  transcript events, PostgreSQL), timed from the first send until the bench has read back the
  transcript event that ends the clip and its rows are in PostgreSQL;
* ``chunked``: the clip as 2 s raw-PCM chunks and an end marker, sent at once, timed the same way.

``xrt`` = seconds / audio seconds over all clips (wall time for the Kafka modes); ``whisper_s`` is the
time inside whisper.cpp (from the events); ``wer`` = word edits / reference words over all clips;
``wer_vs_whole`` compares ``chunked`` with ``pipeline``; ``vs_bare`` = xrt / bare xrt of the model;
``overhead_ms_per_window`` = (wall − whisper) / windows, the cost of everything around Whisper.
``ratio`` = pipeline xRT ÷ bare xRT for tiny.en (goal ≤ 1.1; chunked ≤ 1.3 × pipeline). Two more rows
give the MiniLM embedder's sentences/s, batched and one at a time.

The processor writes to a scratch PostgreSQL database (``wavegraph_bench_asr``, migrated at start and
dropped at the end) and to topics of its own, deleted at the end.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console

from wavegraph.clients import make_consumer, make_producer
from wavegraph.errors import MissingPrerequisite
from wavegraph.events import AudioMeta, TranscriptEvent
from wavegraph.migrations.api import apply as apply_migrations
from wavegraph.processors.asr.audio import load_audio_file
from wavegraph.processors.asr.device import choose_route
from wavegraph.processors.asr.engine import Transcriber, install_log_bridge
from wavegraph.processors.asr.samples import JFK_TEXT, SPEECH_TEXTS, Speech, espeak_speech, jfk_wav
from wavegraph.processors.asr.wer import edit_distance, normalize
from wavegraph.processors.audio.pipeline import run_audio
from wavegraph.processors.embed_text import TextEmbedder
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings, load_settings
from wavegraph.streams.publish import wav_chunks
from wavegraph.streams.topics import delete_topics, ensure_topics

CHUNK_S = 2.0
DATABASE = "wavegraph_bench_asr"
TIMEOUT_S = 300.0
EMBED_MODEL = "all-MiniLM-L6-v2 int8 (ONNX)"

Send = tuple[bytes, list[tuple[str, bytes]], bytes]
Mode = Callable[[Speech, str, str], list[Send]]


@dataclass
class _Tally:
    audio_s: float = 0.0
    seconds: float = 0.0
    whisper_s: float = 0.0
    edits: int = 0
    words: int = 0
    windows: int = 0
    whole_edits: int = 0
    whole_words: int = 0
    texts: list[str] = field(default_factory=list)

    def add(
        self, reference: str, text: str, audio_s: float, seconds: float, whisper_s: float, windows: int
    ) -> None:
        ref = normalize(reference)
        self.audio_s += audio_s
        self.seconds += seconds
        self.whisper_s += whisper_s
        self.edits += edit_distance(ref, normalize(text))
        self.words += len(ref)
        self.windows += windows
        self.texts.append(text)

    def row(self, model: str, mode: str, threads: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "model": model,
            "mode": mode,
            "threads": threads,
            "xrt": self.seconds / self.audio_s,
            "wer": self.edits / self.words,
            "audio_s": round(self.audio_s, 2),
            "wall_s": round(self.seconds, 3),
            "whisper_s": round(self.whisper_s, 3),
            "windows": self.windows,
            "overhead_ms_per_window": 1000 * (self.seconds - self.whisper_s) / max(self.windows, 1),
        }
        if self.whole_words:
            row["wer_vs_whole"] = self.whole_edits / self.whole_words
        return row


def _clips(settings: Settings, workdir: Path, quick: bool, console: Console) -> list[Speech]:
    jfk = jfk_wav(settings)
    clips = [Speech(JFK_TEXT, jfk, load_audio_file(jfk, max_s=settings.asr.max_stream_s))]
    names = ["library"] if quick else list(SPEECH_TEXTS)
    try:
        clips += [espeak_speech(SPEECH_TEXTS[n], workdir / f"{n}.wav") for n in names]
    except MissingPrerequisite as exc:
        console.print(f"[yellow]skipping synthetic speech: {exc}[/]")
    return clips


def _bench_settings(settings: Settings) -> Settings:
    """Own topics, group and database; events up to Kafka's limit so a whole clip fits in one."""
    uid = uuid.uuid4().hex[:8]
    k, pg = settings.kafka, settings.postgres
    topics = k.topics.model_copy(
        update={n: f"bench.{n}.{uid}" for n in ("audio", "transcripts", "dlq")},
    )
    dsn = re.sub(r"/[^/?]*(\?|$)", rf"/{DATABASE}\1", pg.dsn, count=1) if pg.dsn else None
    return settings.model_copy(
        update={
            "kafka": k.model_copy(update={"topics": topics}),
            "postgres": pg.model_copy(update={"database": DATABASE, "dsn": dsn}),
            "runtime": settings.runtime.model_copy(
                update={"group_prefix": f"bench-{uid}", "max_event_bytes": k.max_message_bytes}
            ),
        }
    )


async def _admin_execute(settings: Settings, *statements: str) -> None:
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def _scratch(settings: Settings, bench: Settings) -> AsyncIterator[None]:
    """A migrated scratch database and fresh topics for ``bench``, removed afterwards."""
    drop = f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"
    await _admin_execute(settings, drop, f"CREATE DATABASE {DATABASE}")
    names = [bench.kafka.topics.audio, bench.kafka.topics.transcripts, bench.kafka.topics.dlq]
    try:
        await apply_migrations(bench, dbs=["postgres"])
        await ensure_topics(bench.kafka, names)
        yield
    finally:
        await delete_topics(bench.kafka, names)
        await _admin_execute(settings, drop)


def _whole(clip: Speech, tenant: str, stream: str) -> list[Send]:
    meta = AudioMeta(tenant=tenant, stream_id=stream, seq=0, encoding="wav", eos=True)
    return [(clip.path.read_bytes(), meta.to_headers(), f"{tenant}/{stream}".encode())]


def _chunked(clip: Speech, tenant: str, stream: str) -> list[Send]:
    key = f"{tenant}/{stream}".encode()
    return [(c.pcm, c.meta.to_headers(), key) for c in wav_chunks(clip.path, tenant, stream, CHUNK_S)]


class _Pipeline:
    """Sends a clip's records, waits for the transcript event that ends it and for its rows."""

    def __init__(
        self, bench: Settings, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, db: asyncpg.Connection
    ) -> None:
        self.bench = bench
        self.producer = producer
        self.consumer = consumer
        self.db = db
        self.tenant = min(bench.http.api_keys.values())  # the processor takes known tenants only

    async def _stored(self, stream: str, windows: int) -> None:
        """Events are published before they are stored: wait the few ms until the rows are there too."""
        query = "SELECT count(*) FROM transcripts WHERE tenant = $1 AND stream_id = $2"
        for _ in range(5000):  # 10 s
            if await self.db.fetchval(query, self.tenant, stream) >= windows:
                return
            await asyncio.sleep(0.002)
        raise TimeoutError(f"the transcripts of {stream} were published but not stored")

    async def run(self, clip: Speech, mode: Mode, stream: str) -> tuple[float, list[TranscriptEvent]]:
        """Seconds from the first send until the clip's transcripts are read back and stored; the events."""
        sends = mode(clip, self.tenant, stream)
        audio_s = clip.audio.duration_s
        started = time.perf_counter()
        futures = [
            await self.producer.send(self.bench.kafka.topics.audio, value=v, headers=h, key=k)
            for v, h, k in sends
        ]
        await asyncio.gather(*futures)
        events: list[TranscriptEvent] = []
        while time.perf_counter() - started < TIMEOUT_S:
            batches = await self.consumer.getmany(timeout_ms=20)
            for records in batches.values():
                events += [
                    e
                    for r in records
                    if (e := TranscriptEvent.model_validate_json(r.value)).stream_id == stream
                ]
            if events and max(e.end_s for e in events) >= audio_s - 1e-3:
                await self._stored(stream, len(events))
                return time.perf_counter() - started, sorted(events, key=lambda e: e.window)
        raise TimeoutError(f"no complete transcript of {stream} after {TIMEOUT_S:g} s")


def _bare_model(path: Path, threads: int) -> Any:
    from pywhispercpp.model import Model

    install_log_bridge()
    return Model(
        str(path),
        n_threads=threads,
        language="en",
        print_progress=False,
        print_realtime=False,
        redirect_whispercpp_logs_to=False,
    )


@asynccontextmanager
async def _running_pipeline(
    bench: Settings, transcriber: Transcriber, embedder: TextEmbedder
) -> AsyncIterator[_Pipeline]:
    """The processor running on ``bench``'s topics, and the clients to feed it and read it back."""
    async with AsyncExitStack() as stack:
        producer = make_producer(bench.kafka, linger_ms=0)
        await producer.start()
        stack.push_async_callback(producer.stop)
        consumer = make_consumer(bench.kafka)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        tps = [TopicPartition(bench.kafka.topics.transcripts, p) for p in range(bench.kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        db = await asyncpg.connect(bench.postgres.url)
        stack.push_async_callback(db.close)
        stop = asyncio.Event()
        task = asyncio.create_task(run_audio(bench, stop, transcriber=transcriber, embedder=embedder))

        async def finish() -> None:
            stop.set()
            await task

        stack.push_async_callback(finish)
        yield _Pipeline(bench, producer, consumer, db)


async def _bench_model(
    bench: Settings, model: str, clips: list[Speech], embedder: TextEmbedder, console: Console
) -> list[dict[str, Any]]:
    bench = bench.model_copy(update={"asr": bench.asr.model_copy(update={"model": model})})
    with await asyncio.to_thread(Transcriber, bench, model) as transcriber:
        rows = await _bench_clips(bench, transcriber, clips, embedder, console)
    for row in rows:
        row["vs_bare"] = row["xrt"] / rows[0]["xrt"]
    return rows


async def _bench_clips(
    bench: Settings, transcriber: Transcriber, clips: list[Speech], embedder: TextEmbedder, console: Console
) -> list[dict[str, Any]]:
    model, threads = transcriber.model, bench.asr.threads
    bare, whole, chunked = _Tally(), _Tally(), _Tally()
    bare_model = await asyncio.to_thread(_bare_model, transcriber.model_path, threads)
    await asyncio.to_thread(transcriber.warm_up)
    async with _running_pipeline(bench, transcriber, embedder) as pipeline:
        warm = clips[0]
        await asyncio.to_thread(bare_model.transcribe, warm.audio.samples)
        await pipeline.run(warm, _whole, f"warm-{model}")
        for i, clip in enumerate(clips):
            audio_s = clip.audio.duration_s
            console.print(f"  {model}: {clip.path.name} ({audio_s:.1f} s)")
            t0 = time.perf_counter()
            segments = await asyncio.to_thread(bare_model.transcribe, clip.audio.samples)
            elapsed = time.perf_counter() - t0
            bare.add(clip.text, " ".join(s.text for s in segments), audio_s, elapsed, elapsed, 1)
            texts = {}
            for tally, sends in ((whole, _whole), (chunked, _chunked)):
                stream = f"{sends.__name__[1:]}-{model}-{i}"
                wall, events = await pipeline.run(clip, sends, stream)
                texts[sends] = " ".join(e.text for e in events)
                whisper_s = sum(e.processing_ms for e in events) / 1000
                tally.add(clip.text, texts[sends], audio_s, wall, whisper_s, len(events))
            ref = normalize(texts[_whole])
            chunked.whole_edits += edit_distance(ref, normalize(texts[_chunked]))
            chunked.whole_words += len(ref)
    return [
        bare.row(model, "bare", threads),
        whole.row(model, "pipeline", threads),
        chunked.row(model, "chunked", threads),
    ]


def _embedding_rows(embedder: TextEmbedder, quick: bool) -> list[dict[str, Any]]:
    sentences = [
        s.strip() for t in (JFK_TEXT, *SPEECH_TEXTS.values()) for s in re.split(r"[.,]", t) if s.strip()
    ]
    n = 128 if quick else 1024
    texts = [f"{sentences[i % len(sentences)]} {i}" for i in range(n)]
    embedder.embed(texts[:32])  # warm up
    t0 = time.perf_counter()
    embedder.embed(texts)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for text in texts[: n // 4]:
        embedder.embed_one(text)
    single = time.perf_counter() - t0
    return [
        {"model": EMBED_MODEL, "mode": "embed_batched", "sentences": n, "sentences_per_s": n / batched},
        {
            "model": EMBED_MODEL,
            "mode": "embed_single",
            "sentences": n // 4,
            "sentences_per_s": (n // 4) / single,
        },
    ]


async def _run(
    settings: Settings, quick: bool, console: Console
) -> tuple[list[dict[str, Any]], list[Speech]]:
    bench = _bench_settings(settings)
    models = ["tiny.en"] if quick else ["tiny.en", "base"]
    embedder = await asyncio.to_thread(TextEmbedder)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wavegraph-bench-asr-") as tmp:
        clips = _clips(settings, Path(tmp), quick, console)
        async with _scratch(settings, bench):
            for model in models:
                rows += await _bench_model(bench, model, clips, embedder, console)
    rows += await asyncio.to_thread(_embedding_rows, embedder, quick)
    return rows, clips


def run_asr_pipeline_bench(
    settings: Settings | None = None, quick: bool = False, out: Path | None = None
) -> dict[str, Any]:
    """Run the pipeline bench, write ``bench/results/asr_pipeline.json`` (or ``out``), return the report."""
    settings = settings or load_settings()
    console = Console(stderr=True)
    rows, clips = asyncio.run(_run(settings, quick, console))
    by_mode = {(r["model"], r["mode"]): r for r in rows}
    ratio = by_mode[("tiny.en", "pipeline")]["xrt"] / by_mode[("tiny.en", "bare")]["xrt"]
    params = {
        "quick": quick,
        "models": sorted({r["model"] for r in rows if "xrt" in r}),
        "threads": settings.asr.threads,
        "chunk_s": CHUNK_S,
        "window_s": settings.asr.window_s,
        "clips": [{"file": c.path.name, "audio_s": round(c.audio.duration_s, 2)} for c in clips],
        "device": choose_route(settings.asr).device,
        "chunked_vs_pipeline": by_mode[("tiny.en", "chunked")]["xrt"]
        / by_mode[("tiny.en", "pipeline")]["xrt"],
    }
    report = build_report("asr_pipeline", params, rows, ratio)
    write_report(report, out)
    return report
