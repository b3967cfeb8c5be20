"""``wavegraph demo``: the pipeline on sample data, end to end against the real local services.

1. Publishes the Les Misérables co-occurrence graph (networkx) as edge events to Kafka.
2. Runs the edge processor until every event is in Neo4j (offsets committed after Neo4j confirmed).
3. Reads the graph back from Neo4j and ranks the characters with PageRank.
4. Publishes the JFK sample as 2 s audio chunks; the audio processor windows, transcribes (whisper.cpp),
   publishes and stores the transcript; prints it with the real-time factor.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from wavegraph.settings import Settings


def sample_edge_values(tenant: str, run: str) -> list[bytes]:
    import networkx as nx

    g = nx.les_miserables_graph()
    now = time.time()
    values = []
    for i, (u, v, w) in enumerate(g.edges(data="weight", default=1.0)):
        values.append(
            orjson.dumps(
                {
                    "tenant": tenant,
                    "src": f"{run}:{u}",
                    "dst": f"{run}:{v}",
                    "rel": "APPEARS_WITH",
                    "weight": float(w),
                    "ts": now + i * 1e-3,
                }
            )
        )
    return values


async def _edges(settings: Settings, console: Console) -> dict[str, Any]:
    from wavegraph.clients import neo4j_driver
    from wavegraph.processors.edges.pipeline import run_edges
    from wavegraph.streams.publish import publish_values
    from wavegraph.streams.topics import ensure_topics

    await ensure_topics(settings.kafka)
    run = f"demo-{uuid.uuid4().hex[:6]}"
    values = sample_edge_values("acme", run)
    started = time.perf_counter()
    sent = await publish_values(settings.kafka, settings.kafka.topics.edges, values)
    console.print(f"published {sent} edge events (Les Misérables, tenant acme, prefix {run})")
    stop = asyncio.Event()
    task = asyncio.create_task(run_edges(settings, stop))
    driver = neo4j_driver(settings.neo4j)
    try:
        deadline = time.monotonic() + 120
        count = 0
        while time.monotonic() < deadline:
            records, _, _ = await driver.execute_query(
                "MATCH (a:Node {tenant: 'acme'})-[e:APPEARS_WITH]->(:Node) WHERE a.id STARTS WITH $p "
                "RETURN count(e)",
                p=run + ":",
            )
            count = records[0][0]
            if count >= sent or task.done():
                break
            await asyncio.sleep(0.25)
        elapsed = time.perf_counter() - started
        console.print(f"Neo4j holds {count} of {sent} relationships after {elapsed:.1f}s")
        records, _, _ = await driver.execute_query(
            "MATCH (a:Node {tenant: 'acme'})-[e:APPEARS_WITH]->(b:Node) WHERE a.id STARTS WITH $p "
            "RETURN a.id AS s, b.id AS d, e.weight AS w",
            p=run + ":",
        )
        graph_rows = [(r["s"], r["d"], r["w"]) for r in records]
    finally:
        stop.set()
        stats = await task
        await driver.close()
    return {
        "sent": sent,
        "in_neo4j": count,
        "seconds": elapsed,
        "stats": stats,
        "rows": graph_rows,
        "run": run,
    }


def _pagerank(rows: list[tuple[str, str, float]]) -> list[tuple[str, float]]:
    from wavegraph.processors.graph.pagerank import pagerank_scores
    from wavegraph.processors.graph.state import GraphState

    src = [s for s, _, _ in rows] + [d for _, d, _ in rows]
    dst = [d for _, d, _ in rows] + [s for s, _, _ in rows]  # co-occurrence is symmetric
    weight = [w for _, _, w in rows] * 2
    scores = pagerank_scores(GraphState.from_edges(src, dst, weight))
    return sorted(scores.items(), key=lambda kv: -kv[1])[:8]


async def _audio(settings: Settings, console: Console) -> dict[str, Any]:
    """JFK as 2 s PCM chunks → wavegraph.audio.v1 → the audio processor → transcripts in PostgreSQL."""
    import asyncpg

    from wavegraph.processors.asr.samples import jfk_wav
    from wavegraph.processors.audio.pipeline import run_audio
    from wavegraph.streams.publish import publish_audio, wav_chunks

    stream = f"demo-{uuid.uuid4().hex[:6]}"
    sent = await publish_audio(settings.kafka, wav_chunks(jfk_wav(settings), "acme", stream, chunk_s=2.0))
    console.print(f"published {sent} audio events (JFK sample as 2 s chunks + end marker, stream {stream})")
    stop = asyncio.Event()
    task = asyncio.create_task(run_audio(settings, stop))
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        deadline = time.monotonic() + 300
        rows: list[Any] = []
        while time.monotonic() < deadline and not task.done():
            rows = await conn.fetch(
                "SELECT window_index, start_s, end_s, text, model, device, xrt FROM transcripts "
                "WHERE tenant = 'acme' AND stream_id = $1 ORDER BY window_index",
                stream,
            )
            if rows:
                break
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await conn.close()
        await task
    if not rows:
        raise RuntimeError("the audio processor stored no transcript within 5 minutes")
    first = rows[0]
    return {
        "text": " ".join(r["text"].strip() for r in rows),
        "model": first["model"],
        "device": first["device"],
        "xrt": float(first["xrt"]),
        "windows": len(rows),
    }


async def _read_side(settings: Settings, console: Console, run: str, top_node: str) -> dict[str, Any]:
    """The HTTP read side, in process: a search for a JFK phrase and the explanation of the top node."""
    import httpx

    from wavegraph.clients import neo4j_driver
    from wavegraph.http import create_app

    local = settings.model_copy(update={"http": settings.http.model_copy(update={"allow_dev_keys": True})})
    key = next((k for k, t in local.http.api_keys.items() if t == "acme"), None)
    if key is None:
        raise RuntimeError("the demo needs an API key of tenant acme in http.api_keys")
    headers = {"Authorization": f"Bearer {key}"}
    app = create_app(local)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://demo", timeout=60) as client:
                search = await client.get(
                    "/v1/search",
                    params={"q": "ask what you can do for your country", "k": 5},
                    headers=headers,
                )
                explain = await client.get(f"/v1/explain/{top_node}", params={"limit": 25}, headers=headers)
    finally:
        driver = neo4j_driver(settings.neo4j)
        await driver.execute_query(
            "MATCH (n:Node {tenant: 'acme'}) WHERE n.id STARTS WITH $p DETACH DELETE n", p=run + ":"
        )
        await driver.close()
    if search.status_code != 200 or explain.status_code != 200:
        raise RuntimeError(
            f"read side: search {search.status_code} {search.text[:200]}, explain "
            f"{explain.status_code} {explain.text[:200]}"
        )
    return {"search": search.json(), "explain": explain.json()}


def _html_report(path: Path, top: list[tuple[str, float]], read: dict[str, Any], transcript: str) -> Path:
    import base64
    import html

    esc = html.escape
    hits = "".join(
        f"<tr><td>{h.get('score', 0):.3f}</td><td>{esc(str(h.get('source')))}</td>"
        f"<td>{esc(str(h.get('stream_id', h.get('node', ''))))}</td>"
        f"<td>{h.get('start_s', 0):.1f}–{h.get('end_s', 0):.1f} s</td>"
        f"<td>{esc(str(h.get('text', '')))}</td></tr>"
        for h in read["search"]["hits"]
    )
    ranks = "".join(f"<tr><td>{esc(n.split(':', 1)[1])}</td><td>{s:.4f}</td></tr>" for n, s in top)
    svg = base64.b64decode(read["explain"]["svg"]).decode()
    node = esc(read["explain"]["node"].split(":", 1)[-1])
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>wavegraph demo</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:auto}td,th{padding:2px 8px;text-align:left}"
        "</style></head><body><h1>wavegraph demo</h1>"
        f"<h2>Transcript (JFK sample)</h2><p><i>{esc(transcript)}</i></p>"
        "<h2>Search: “ask what you can do for your country”</h2>"
        f"<table><tr><th>score</th><th>source</th><th>stream</th><th>when</th><th>text</th></tr>{hits}</table>"
        f"<h2>Explain: {node}</h2>{svg}"
        "<h2>PageRank (Les Misérables)</h2>"
        f"<table><tr><th>character</th><th>PageRank</th></tr>{ranks}</table>"
        "</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path


def run_demo(settings: Settings, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    console.rule("[bold]1-2. edges → Kafka → edge processor → Neo4j")
    edges = asyncio.run(_edges(settings, console))
    console.rule("[bold]3. PageRank of the graph read back from Neo4j")
    top = _pagerank(edges["rows"])
    table = Table("character", "PageRank")
    for node, score in top:
        table.add_row(node.split(":", 1)[1], f"{score:.4f}")
    console.print(table)
    console.rule("[bold]4. audio → Kafka → whisper.cpp → transcripts topic + PostgreSQL")
    tr = asyncio.run(_audio(settings, console))
    console.print(f"[italic]{tr['text']}[/]")
    console.print(f"{tr['windows']} window(s), model {tr['model']} on {tr['device']}: xRT {tr['xrt']:.3f}")
    console.rule("[bold]5. the read side over HTTP: search and explain")
    read = asyncio.run(_read_side(settings, console, edges["run"], top[0][0]))
    hits = Table("score", "source", "stream", "when", "text", title="GET /v1/search")
    for h in read["search"]["hits"]:
        hits.add_row(
            f"{h['score']:.3f}", str(h["source"]), str(h.get("stream_id", "")),
            f"{h.get('start_s', 0):.1f}–{h.get('end_s', 0):.1f} s", str(h.get("text", ""))[:60],
        )  # fmt: skip
    console.print(hits)
    ex = read["explain"]
    console.print(
        f"GET /v1/explain/{ex['node'].split(':', 1)[-1]}: {len(ex['nodes'])} nodes, "
        f"{len(ex['edges'])} edges, {len(ex['attn'])} attention weights"
    )
    report = _html_report(settings.services.state_dir / "demo-report.html", top, read, tr["text"].strip())
    console.print(f"report: [bold]{report.resolve()}[/]")
    summary = {
        "edges_sent": edges["sent"],
        "edges_in_neo4j": edges["in_neo4j"],
        "dead_letters": edges["stats"].get("dead_letters", 0),
        "top_node": top[0][0] if top else None,
        "transcript": tr["text"].strip(),
        "xrt": tr["xrt"],
        "search_hits": len(read["search"]["hits"]),
        "report": str(report),
    }
    console.rule("[bold]summary")
    console.print(summary)
    return summary
