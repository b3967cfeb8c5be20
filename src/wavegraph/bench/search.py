"""``wavegraph bench search``: recall@5, MRR and latency of lexical, semantic and hybrid search.

Built in the same run, nothing downloaded:

* **a labelled corpus** (:data:`CORPUS`): twelve segments (six with ``quick``) each naming a rare name
  or code (``zq7vex``, ``Okonkwo``, ``RX-4471``...), among :data:`DISTRACTORS` that name look-alikes
  (``zx7veq``, ``Okafor``, ``RX-4417``) or other topics, two segments to a window, six windows a stream;
* **two versions of it**, each for its own tenant: ``text`` (the known sentences stored as segments)
  and ``speech`` (each window spoken by espeak-ng and transcribed by the real Whisper engine,
  ``asr.model``; segments are Whisper's, and the relevant one is the segment of the labelled window
  sharing most words with the sentence). Both go through the real
  :class:`~wavegraph.sinks.transcripts.TranscriptStore` with MiniLM embeddings (window and segments).
  A second tenant holds the same windows; a hit of its streams fails the run;
* **three query classes** per labelled segment: ``exact`` (a phrase copied from it), ``rare`` (the rare
  token alone), ``paraphrase`` (the meaning, no content word shared).

Rows (per corpus, mode, class and path): ``recall@5`` (relevant segment in the top 5), ``mrr`` (1/rank
within the top 10, else 0), ``p50_ms`` / ``p95_ms`` in-process (``HybridSearch.search``, text embedding
included) and over HTTP (the real app under uvicorn on a free port, httpx over TCP, keep-alive), the two
interleaved query by query so load on the shared machine hits both alike; ``embed`` rows give the text
embedding time. ``ratio`` = hybrid HTTP p95 / in-process p95 (text corpus). ``params.goals`` checks, per
corpus, hybrid recall@5 >= max(lexical, semantic) on every class, and HTTP p95 <= 1.5 x in-process p95
+ embedding p95.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
from rich.console import Console

from wavegraph.events import Segment, TranscriptEvent
from wavegraph.processors.audio.cursor import StreamPosition
from wavegraph.query.hybrid import HybridSearch, SearchResult
from wavegraph.query.search import Embedder
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings
from wavegraph.sinks.transcripts import StoredWindow, TranscriptStore

__all__ = ["CORPUS", "DISTRACTORS", "run_search_bench", "stored_window", "timed_window"]

MODES = ("lexical", "semantic", "hybrid")
CLASSES = ("exact", "rare", "paraphrase")
FETCH_K = 10


@dataclass(frozen=True)
class Item:
    """A segment naming something rare, and three queries whose one relevant answer it is."""

    segment: str
    exact: str
    rare: str
    paraphrase: str


CORPUS: tuple[Item, ...] = (
    Item(
        "Adaeze Okonkwo signed the lease for the riverside warehouse on Tuesday.",
        "signed the lease for the riverside warehouse",
        "Okonkwo",
        "someone agreed to rent a storage building near the water",
    ),
    Item(
        "The courier lost parcel zq7vex somewhere between the depot and the airport.",
        "somewhere between the depot and the airport",
        "zq7vex",
        "a delivery package went missing on its way to the flights terminal",
    ),
    Item(
        "Doctor Wojciechowska prescribed antibiotics for the persistent chest infection.",
        "prescribed antibiotics for the persistent chest infection",
        "Wojciechowska",
        "the physician gave medicine to treat a lung illness that would not go away",
    ),
    Item(
        "The Kettering quarterly report shows revenue grew eleven percent.",
        "revenue grew eleven percent",
        "Kettering",
        "sales income rose by about a tenth this period",
    ),
    Item(
        "Our supplier Thornquist shipped the replacement turbine blades on Monday.",
        "shipped the replacement turbine blades",
        "Thornquist",
        "the vendor sent new parts for the wind generator at the start of the week",
    ),
    Item(
        "Captain Ngata ordered the crew to lower the lifeboats during the storm.",
        "lower the lifeboats during the storm",
        "Ngata",
        "the ship's commander told sailors to launch rescue rafts in bad weather",
    ),
    Item(
        "The firmware build xb9-kappa bricked every router in the test lab.",
        "bricked every router in the test lab",
        "xb9-kappa",
        "a software update broke all the network devices we were trying out",
    ),
    Item(
        "Professor Ilunga explained how glaciers carve deep valleys over millennia.",
        "glaciers carve deep valleys",
        "Ilunga",
        "the lecturer described ice sheets slowly cutting through mountains across thousands of years",
    ),
    Item(
        "Mrs Featherstonehaugh complained that the heating in her flat is broken again.",
        "the heating in her flat is broken again",
        "Featherstonehaugh",
        "a tenant said her apartment radiators stopped working once more",
    ),
    Item(
        "The Quenneville contract requires delivery of forty tonnes of steel by March.",
        "forty tonnes of steel by March",
        "Quenneville",
        "the agreement obliges us to supply a large amount of metal early in spring",
    ),
    Item(
        "Chef Abernathy burned the risotto because the stove was set too high.",
        "burned the risotto because the stove was set too high",
        "Abernathy",
        "the cook ruined the rice dish by cooking it over excessive heat",
    ),
    Item(
        "Ticket RX-4471 reports that customers cannot reset their passwords.",
        "customers cannot reset their passwords",
        "RX-4471",
        "users are unable to change their login credentials according to the issue",
    ),
)
"""Twelve labelled segments; ``quick`` uses the first six (and all distractors)."""

DISTRACTORS: tuple[str, ...] = (
    "Adaora Okafor reviewed the insurance policy for the office building.",
    "Parcel zx7veq was delivered to the wrong address yesterday.",
    "Doctor Wojcik recommended rest and plenty of fluids.",
    "The Kettleby annual summary was published last week.",
    "The supplier Thornton delayed the shipment of copper wire.",
    "Captain Ngatai inspected the harbour before dawn.",
    "Firmware build xb8-kappa passed every test without issues.",
    "Professor Ilunde talked about volcanoes and earthquakes.",
    "Mr Featherstone praised the new kitchen in his house.",
    "The Quennell agreement covers the supply of timber.",
    "Chef Abernethy won a prize for his chocolate dessert.",
    "Ticket RX-4417 asks for a dark mode in the settings page.",
    "Heavy rain flooded the valley and the river burst its banks.",
    "The football team won the championship with a goal in extra time.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "Knead the dough with flour, water and a pinch of salt before baking the bread.",
    "The new smartphone has a faster processor and a sharper camera.",
    "We moved the meeting to Thursday because the projector was broken.",
)


def stored_window(
    embedder: Embedder,
    tenant: str,
    stream_id: str,
    window: int,
    segments: Sequence[str],
    *,
    segment_s: float = 4.0,
) -> StoredWindow:
    """A transcribed window of ``segments`` (``segment_s`` seconds each, windows back to back) with
    MiniLM embeddings of the window text and of each segment, ready for ``TranscriptStore.save``."""
    start = window * segment_s * len(segments)
    timed = [(start + i * segment_s, start + (i + 1) * segment_s, text) for i, text in enumerate(segments)]
    return timed_window(embedder, tenant, stream_id, window, timed, start, start + segment_s * len(segments))


def timed_window(
    embedder: Embedder,
    tenant: str,
    stream_id: str,
    window: int,
    segments: Sequence[tuple[float, float, str]],
    start_s: float,
    end_s: float,
) -> StoredWindow:
    """A window of ``(start_s, end_s, text)`` segments (e.g. Whisper's), embedded like the audio sink."""
    segs = [Segment(start_s=a, end_s=max(a, b), text=t) for a, b, t in segments]
    text = " ".join(t for _, _, t in segments)
    event = TranscriptEvent(
        tenant=tenant,
        stream_id=stream_id,
        window=window,
        start_s=start_s,
        end_s=max(start_s, end_s),
        text=text,
        segments=segs,
        model="bench",
        device="cpu",
        processing_ms=0.0,
        xrt=0.0,
    )
    vectors = np.asarray(embedder.embed([text, *(t for _, _, t in segments)]), dtype=np.float32)
    position = StreamPosition(next_seq=window + 1, start_s=event.end_s, next_window=window + 1)
    return StoredWindow(event, window, window, position, vectors[0], vectors[1:])


@dataclass(frozen=True)
class _Query:
    cls: str
    text: str
    relevant: str  # the hit id of the relevant segment


def _layout(items: Sequence[Item], prefix: str) -> tuple[list[tuple[str, int, list[str]]], dict[str, str]]:
    """Windows of two segments (labelled and distractors interleaved, seeded) across streams of six
    windows; returns the windows and the hit id of each labelled segment."""
    texts = [it.segment for it in items] + list(DISTRACTORS)
    order = np.random.default_rng(12).permutation(len(texts)).tolist()
    windows: list[tuple[str, int, list[str]]] = []
    ids: dict[str, str] = {}
    for n, start in enumerate(range(0, len(order), 2)):
        stream, window = f"{prefix}-{n // 6}", n % 6
        segs = [texts[i] for i in order[start : start + 2]]
        windows.append((stream, window, segs))
        for j, text in enumerate(segs):
            ids[text] = f"{stream}:{window}:{j}"
    return windows, ids


def _words(text: str) -> set[str]:
    return {w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split() if len(w) > 2}


async def _spoken(
    settings: Settings, windows: Sequence[tuple[str, int, list[str]]], workdir: Path
) -> tuple[list[list[tuple[float, float, str]]], float]:
    """Each window's text spoken by espeak-ng and transcribed by the real Whisper engine
    (``asr.model``): per window its segments ``(start_s, end_s, text)`` (times from 0), and the xRT."""
    from wavegraph.processors.asr.engine import Transcriber
    from wavegraph.processors.asr.samples import espeak_speech

    out: list[list[tuple[float, float, str]]] = []
    audio_s = processing_s = 0.0
    with Transcriber(settings) as engine:
        for i, (_, _, segs) in enumerate(windows):
            speech = await asyncio.to_thread(espeak_speech, " ... ".join(segs), workdir / f"w{i}.wav")
            started = time.perf_counter()
            transcript = await engine.transcribe(speech.audio.samples)
            processing_s += time.perf_counter() - started
            audio_s += len(speech.audio.samples) / 16_000
            out.append([(g.start_s, g.end_s, g.text.strip()) for g in transcript.segments if g.text.strip()])
    return out, processing_s / audio_s if audio_s else 0.0


def _relabel(
    items: Sequence[Item],
    windows: Sequence[tuple[str, int, list[str]]],
    spoken: Sequence[Sequence[tuple[float, float, str]]],
) -> dict[str, str]:
    """The hit id of each labelled sentence after transcription: the Whisper segment of its window that
    shares the most words with it (segment boundaries are Whisper's, not the sentences')."""
    ids: dict[str, str] = {}
    labelled = {it.segment for it in items}
    for (stream, window, segs), heard in zip(windows, spoken, strict=True):
        for sentence in segs:
            if sentence in labelled and heard:
                overlap = [len(_words(sentence) & _words(t)) for _, _, t in heard]
                ids[sentence] = f"{stream}:{window}:{int(np.argmax(overlap))}"
    return ids


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_search_bench(
    settings: Settings, quick: bool = False, out: Path | None = None, *, speech: bool = True
) -> dict[str, Any]:
    """Run the bench (see the module doc), write ``out`` (default ``bench/results/search.json``) and
    return the report. Needs PostgreSQL migrated (V2026.12.1), Kafka and Redis up (the app starts);
    ``speech`` (the default) needs espeak-ng and the Whisper model of ``asr.model``."""
    return asyncio.run(_run(settings, quick, out, Console(), speech))


async def _run(
    settings: Settings, quick: bool, out: Path | None, console: Console, speech: bool
) -> dict[str, Any]:
    import tempfile

    import uvicorn

    from wavegraph.http import create_app
    from wavegraph.processors.embed_text import TextEmbedder

    run = uuid.uuid4().hex[:8]
    items = CORPUS[:6] if quick else CORPUS
    repeats = 1 if quick else 3
    embedder = TextEmbedder()
    corpora = ("text", "speech") if speech else ("text",)
    keys: dict[str, str] = {}  # API key -> tenant
    plan: dict[str, tuple[str, str, str, list[_Query]]] = {}  # corpus -> (tenant, key, prefix, queries)
    xrt = None
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wavegraph-bench-search-") as tmp:
        vector = settings.vector.model_copy(update={"backend": "faiss", "index_dir": Path(tmp) / "faiss"})
        try:
            async with await TranscriptStore.open(settings.postgres) as store:
                for corpus in corpora:
                    prefix = f"bs{run}{corpus[0]}"
                    windows, relevant = _layout(items, prefix)
                    timed = [_timed(w, segs) for _, w, segs in windows]
                    if corpus == "speech":
                        spoken, xrt = await _spoken(settings, windows, Path(tmp))
                        relevant = _relabel(items, windows, spoken)
                        timed = [_offset(w, heard) for (_, w, _), heard in zip(windows, spoken, strict=True)]
                    pair = (f"bench-{run}-{corpus}", f"bench-{run}-{corpus}-other")
                    for i, tenant in enumerate(pair):
                        stored = [
                            timed_window(embedder, tenant, f"{stream}-b" if i else stream, w, segs, a, z)
                            for (stream, w, _), (segs, a, z) in zip(windows, timed, strict=True)
                        ]
                        await store.save(stored)
                        keys[f"wgbench-{run}-{corpus}-{i}"] = tenant
                    queries = [
                        _Query(cls, getattr(it, cls), relevant[it.segment])
                        for it in items
                        if it.segment in relevant
                        for cls in CLASSES
                    ]
                    plan[corpus] = (pair[0], f"wgbench-{run}-{corpus}-0", prefix, queries)
            http = settings.http.model_copy(update={"api_keys": keys})
            conf = settings.model_copy(update={"vector": vector, "http": http})
            app = create_app(conf)
            port = _free_port()
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            serving = asyncio.create_task(server.serve(), name="bench-search-uvicorn")
            try:
                while not server.started:
                    if serving.done():
                        await serving  # raises why it stopped
                    await asyncio.sleep(0.05)
                hybrid: HybridSearch = app.state.ctx.components["search"]
                await hybrid.vectors.wait_ready()
                backend = hybrid.vectors.backend
                for corpus, (tenant, key, prefix, queries) in plan.items():
                    measured = await _measure(hybrid, port, tenant, key, queries, repeats, prefix)
                    rows.extend({"corpus": corpus, **r} for r in measured)
            finally:
                server.should_exit = True
                await serving
        finally:
            await _cleanup(settings, list(keys.values()))
    report = _report(rows, corpora, backend)
    report["params"].update(
        quick=quick,
        repeats=repeats,
        k=FETCH_K,
        labelled=len(items),
        distractors=len(DISTRACTORS),
        queries={c: len(q) for c, (_, _, _, q) in plan.items()},
        asr_model=settings.asr.model if speech else None,
        asr_xrt=xrt,
    )
    write_report(report, out, console)
    return report


def _timed(
    window: int, segs: Sequence[str], segment_s: float = 4.0
) -> tuple[list[tuple[float, float, str]], float, float]:
    start = window * segment_s * len(segs)
    timed = [(start + i * segment_s, start + (i + 1) * segment_s, t) for i, t in enumerate(segs)]
    return timed, start, start + segment_s * len(segs)


def _offset(
    window: int, heard: Sequence[tuple[float, float, str]]
) -> tuple[list[tuple[float, float, str]], float, float]:
    offset = window * 30.0  # windows of one stream back to back, 30 s apart
    timed = [(offset + a, offset + b, t) for a, b, t in heard] or [(offset, offset, "")]
    return timed, offset, timed[-1][1]


async def _measure(
    hybrid: HybridSearch,
    port: int,
    tenant: str,
    key: str,
    queries: Sequence[_Query],
    repeats: int,
    prefix: str,
) -> list[dict[str, Any]]:
    other_prefix = f"{prefix}-"
    ranks: dict[tuple[str, str], list[int | None]] = {(m, c): [] for m in MODES for c in CLASSES}
    times: dict[tuple[str, str, str], list[float]] = {}
    embeds: list[float] = []
    differ = 0
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
        for mode in MODES:  # warm-up: first queries pay connection set-up and caches
            await client.get("/v1/search", params={"q": "warm up", "mode": mode})
            await hybrid.search(tenant, text="warm up", mode=mode)
        for rep in range(repeats):
            for q in queries:
                for mode in MODES:
                    started = time.perf_counter()
                    result = await hybrid.search(tenant, text=q.text, mode=mode, k=FETCH_K)
                    inproc_ms = (time.perf_counter() - started) * 1000.0
                    started = time.perf_counter()
                    response = await client.get(
                        "/v1/search", params={"q": q.text, "mode": mode, "k": str(FETCH_K)}
                    )
                    http_ms = (time.perf_counter() - started) * 1000.0
                    response.raise_for_status()
                    ids = _ids(result, other_prefix)
                    http_ids = [h["id"] for h in response.json()["hits"]]
                    differ += http_ids != ids  # only if another writer made FAISS lag between the two
                    times.setdefault((mode, q.cls, "inprocess"), []).append(inproc_ms)
                    times.setdefault((mode, q.cls, "http"), []).append(http_ms)
                    if mode == "semantic":
                        embeds.append(result.embed_ms)
                    if rep == 0:
                        ranks[(mode, q.cls)].append(ids.index(q.relevant) + 1 if q.relevant in ids else None)
    rows = []
    for mode in MODES:
        for cls in CLASSES:
            found = ranks[(mode, cls)]
            recall = sum(1 for r in found if r is not None and r <= 5) / len(found)
            mrr = sum(1.0 / r for r in found if r is not None) / len(found)
            for path in ("inprocess", "http"):
                ms = times[(mode, cls, path)]
                rows.append(
                    {
                        "mode": mode,
                        "query_class": cls,
                        "path": path,
                        "recall@5": round(recall, 4),
                        "mrr": round(mrr, 4),
                        "p50_ms": round(_percentile(ms, 50), 3),
                        "p95_ms": round(_percentile(ms, 95), 3),
                        "queries": len(ms),
                    }
                )
    rows.append(
        {
            "mode": "embed",
            "query_class": "all",
            "path": "inprocess",
            "p50_ms": round(_percentile(embeds, 50), 3),
            "p95_ms": round(_percentile(embeds, 95), 3),
            "queries": len(embeds),
            "answers_differ": differ,
        }
    )
    return rows


def _ids(result: SearchResult, own_prefix: str) -> list[str]:
    """The hit ids, after checking that none belongs to the other bench tenant's streams (``-b`` suffix)."""
    for h in result.hits:
        if h.stream_id is not None and h.stream_id.startswith(own_prefix) and h.stream_id.endswith("-b"):
            raise AssertionError(f"a hit of the other tenant leaked: {h.id}")
    return [h.id for h in result.hits]


async def _cleanup(settings: Settings, tenants: list[str]) -> None:
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        await conn.execute("DELETE FROM transcripts WHERE tenant = ANY($1::text[])", tenants)
        await conn.execute("DELETE FROM embeddings WHERE tenant = ANY($1::text[])", tenants)
    finally:
        await conn.close()


def _report(rows: list[dict[str, Any]], corpora: Sequence[str], backend: str) -> dict[str, Any]:
    def row(corpus: str, mode: str, cls: str, path: str) -> dict[str, Any]:
        return next(
            r
            for r in rows
            if (r["corpus"], r["mode"], r["query_class"], r["path"]) == (corpus, mode, cls, path)
        )

    goals: dict[str, Any] = {}
    for c in corpora:
        http_p95 = max(row(c, "hybrid", q, "http")["p95_ms"] for q in CLASSES)
        inproc_p95 = max(row(c, "hybrid", q, "inprocess")["p95_ms"] for q in CLASSES)
        embed_p95 = next(r for r in rows if r["corpus"] == c and r["mode"] == "embed")["p95_ms"]
        goals[c] = {
            "hybrid_recall_ge_best_single": {
                q: row(c, "hybrid", q, "inprocess")["recall@5"]
                >= max(
                    row(c, "lexical", q, "inprocess")["recall@5"],
                    row(c, "semantic", q, "inprocess")["recall@5"],
                )
                for q in CLASSES
            },
            "hybrid_http_p95_ms": http_p95,
            "hybrid_inprocess_p95_ms": inproc_p95,
            "embed_p95_ms": embed_p95,
            "http_goal_ok": http_p95 <= 1.5 * inproc_p95 + embed_p95,
            "mean_recall@5": {
                m: round(statistics.fmean(row(c, m, q, "inprocess")["recall@5"] for q in CLASSES), 4)
                for m in MODES
            },
        }
    text = goals["text"]
    ratio = round(text["hybrid_http_p95_ms"] / text["hybrid_inprocess_p95_ms"], 3)
    return build_report("search", {"vector_backend": backend, "goals": goals}, rows, ratio)
