"""``wavegraph bench NAME``: benchmarks writing JSON under bench/results/ (see ../shared/BENCH.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from wavegraph.settings import load_settings

app = typer.Typer(
    help="Benchmarks; each writes bench/results/NAME.json and prints a table.", no_args_is_help=True
)

OUT = typer.Option(None, "--out", help="Where to write the JSON (default bench/results/NAME.json).")
QUICK = typer.Option(False, "--quick", help="A reduced size that finishes in about a minute.")


@app.command()
def runtime(
    quick: bool = QUICK,
    out: Path | None = OUT,
    peers: bool = typer.Option(
        False,
        "--peers",
        help="Also run Quix Streams and faust-streaming on the same topic (the optional 'peers' extra; "
        "a peer that is not installed is skipped with a note).",
    ),
    events: int | None = typer.Option(
        None, "--events", min=1000, help="Events on the topic (default 200,000; 50,000 with --quick)."
    ),
    repeats: int | None = typer.Option(
        None, "--repeats", min=1, help="Interleaved runs of every case (default 3; 2 with --quick)."
    ),
) -> None:
    """Stream runtime (validate + sink + commit) events/s vs a bare getmany loop on the same topic."""
    from wavegraph.bench.runtime import run_runtime_bench

    run_runtime_bench(load_settings(), quick=quick, out=out, peers=peers, events=events, repeats=repeats)


@app.command()
def scale(
    quick: bool = QUICK,
    out: Path | None = OUT,
    edges: int | None = typer.Option(
        None, "--edges", min=1000, help="Edges per worker count (default 100,000; 20,000 with --quick)."
    ),
    heap: str = typer.Option("256m", "--heap", help="JVM heap of each of the three throwaway brokers."),
) -> None:
    """Edges/s into Neo4j with 1, 2 and 3 edge workers on a throwaway 3-broker cluster (RF 3)."""
    from wavegraph.bench.scale import run_scale_bench

    run_scale_bench(load_settings(), quick=quick, edges=edges, out=out, heap=heap)


@app.command()
def asr(quick: bool = QUICK, out: Path | None = OUT) -> None:
    """whisper.cpp xRT and WER: bare pywhispercpp vs the engine vs 2 s chunks through windows."""
    from wavegraph.bench.asr import run_asr_bench

    run_asr_bench(load_settings(), quick=quick, out=out)


@app.command()
def poincare(quick: bool = QUICK, out: Path | None = OUT) -> None:
    """Poincaré-ball round-trip errors per dtype and the overshoot of stabilised vs textbook maps."""
    from wavegraph.bench.poincare import run_poincare_bench

    run_poincare_bench(quick=quick, out=out)


@app.command()
def tpl(
    quick: bool = QUICK,
    out: Path | None = OUT,
    edges: Path | None = typer.Option(None, "--edges", exists=True, dir_okay=False, help="Your edge list."),
    gate: float | None = typer.Option(
        None,
        "--gate",
        min=1.0,
        help="Exit 1 when the speedup at ΔE = 1, 10 or 20 % is below this (CI runs --quick --gate 2; the "
        "micro-batch rows are not gated); a failing case gets one more run before it counts, since a "
        "loaded machine slows one run.",
    ),
) -> None:
    """Incremental PageRank vs full recompute for ΔE ∈ {0.01, 0.1, 1, 10, 20} % of the edges, and the
    per-batch latency of a stream of 100- and 1,000-edge batches."""
    from wavegraph.bench.tpl import run_tpl_bench, slow_cases

    report = run_tpl_bench(quick=quick, out=out, edges=edges)
    if gate is None:
        return
    slow = slow_cases([report], gate)
    if slow:
        slow = slow_cases([report, run_tpl_bench(quick=quick, out=out, edges=edges)], gate)
    if slow:
        Console(stderr=True).print(f"[bold red]gate:[/] speedup below {gate:g}× at ΔE % = {slow}")
        raise typer.Exit(1)
    Console().print(f"gate: every speedup at ΔE = 1, 10 and 20 % is at least {gate:g}×")


@app.command()
def node2vec(
    quick: bool = QUICK,
    out: Path | None = OUT,
    edges: Path | None = typer.Option(None, "--edges", exists=True, dir_okay=False, help="Your edge list."),
) -> None:
    """Node2Vec walk throughput next to PecanPy's, and the best (p, q) with its link-prediction AUC."""
    from wavegraph.bench.node2vec import run_node2vec_bench

    run_node2vec_bench(quick=quick, out=out, edges=edges)


@app.command()
def graphwave(
    quick: bool = QUICK,
    out: Path | None = OUT,
    edges: Path | None = typer.Option(None, "--edges", exists=True, dir_okay=False, help="Your edge list."),
) -> None:
    """GraphWave time and accuracy next to a reference on pygsp's heat filters."""
    from wavegraph.bench.graphwave import run_graphwave_bench

    run_graphwave_bench(quick=quick, out=out, edges=edges)


@app.command("haa-migration")
def haa_migration(quick: bool = QUICK, out: Path | None = OUT) -> None:
    """The HAA migration on an ephemeral Neo4j: 100k nodes / 300k relationships with 5 % duplicates."""
    from wavegraph.bench.haa_migration import run_haa_migration_bench

    run_haa_migration_bench(load_settings(), quick=quick, out=out)


@app.command(name="asr-pipeline")
def asr_pipeline(quick: bool = QUICK, out: Path | None = OUT) -> None:
    """Whisper xRT through Kafka (whole clips, 2 s chunks) vs bare pywhispercpp; embedder sentences/s."""
    from wavegraph.bench.asr_pipeline import run_asr_pipeline_bench

    run_asr_pipeline_bench(load_settings(), quick=quick, out=out)


DATA = typer.Option(None, "--data", exists=True, dir_okay=False, help="Your vectors (.npy or .fvecs).")
QUERIES = typer.Option(
    None, "--queries", exists=True, dir_okay=False, help="Query vectors (default: held out)."
)


def _int_list(value: str | None, what: str) -> list[int] | None:
    if not value:
        return None
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what}: a comma-separated list of integers, got {value!r}") from None
    if not items or min(items) < 1:
        raise typer.BadParameter(f"{what}: positive integers, got {value!r}")
    return items


@app.command()
def ann(
    quick: bool = QUICK,
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Where to write the JSON (default bench/results/ann.json for the 1 M run, ann_full.json with "
        "--n 0, ann_quick.json with --quick, ann_custom.json with --data or --sizes).",
    ),
    data: Path | None = DATA,
    queries: Path | None = QUERIES,
    k: int = typer.Option(10, "--k", min=1),
    n: int = typer.Option(
        1_000_000, "--n", min=0, help="Synthetic 384-d vectors to scale to in a full run (0: skip that set)."
    ),
    sizes: str | None = typer.Option(
        None, "--sizes", help="Collection sizes, e.g. 2000,20000 (default: around the HNSW threshold)."
    ),
    dims: str = typer.Option("384,784", "--dims", help="Dimensions to run (384 uses real WordNet MiniLM)."),
    real: bool = typer.Option(True, "--real/--synthetic", help="WordNet vectors at 384-d, or synthetic."),
) -> None:
    """FAISS hybrid vs exact flat, HNSW-flat and IVF-flat below and above the HNSW threshold: recall,
    p50/p95 latency (interleaved, same run) and memory."""
    from wavegraph.bench.ann import run_ann_bench

    run_ann_bench(
        quick=quick,
        out=out,
        data=data,
        queries=queries,
        k=k,
        n=n,
        sizes=_int_list(sizes, "--sizes"),
        dims=_int_list(dims, "--dims") or [384, 784],
        real=real,
        settings=load_settings(),
    )


@app.command()
def pgvector(
    quick: bool = QUICK,
    out: Path | None = OUT,
    data: Path | None = DATA,
    queries: Path | None = QUERIES,
    k: int = typer.Option(5, "--k", min=1),
    n: int | None = typer.Option(
        None, "--n", min=1000, help="Add a synthetic 384-d set of N rows (1000000: the at-scale run)."
    ),
    nq: int | None = typer.Option(None, "--nq", min=1, help="At most this many queries per dataset."),
    probes: str | None = typer.Option(
        None, "--probes", help="ivfflat probes for lists=100, e.g. 8,10,12,14,16,20 (default: a wide grid)."
    ),
    storage: str = typer.Option(
        "vector,halfvec", "--storage", help="Index storages to compare: vector (float32), halfvec."
    ),
    prewarm: bool = typer.Option(True, "--prewarm/--no-prewarm", help="Load each index into shared_buffers."),
    hnsw: bool = typer.Option(True, "--hnsw/--no-hnsw", help="Also HNSW (m=16, ef_construction=64)."),
    ephemeral: bool = typer.Option(
        False,
        "--ephemeral",
        help="Run on a throwaway PostgreSQL started with the server settings `services up` gives "
        "(the shared one is never restarted).",
    ),
    shared_buffers: str | None = typer.Option(
        None, "--shared-buffers", help="shared_buffers of the --ephemeral server, e.g. 128MB or 3GB."
    ),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="Sample the server's backends with Linux perf (Debian linux-perf) during each ivfflat "
        "measurement: CPU shares of the distance function, the sort, ... (skipped with a note without perf).",
    ),
) -> None:
    """pgvector ivfflat (lists=100; vector vs halfvec) over probes, lists=rows/1000 and HNSW: recall@k,
    latency, bytes scanned per query and the memory-bandwidth floor."""
    from wavegraph.bench.pgvector import STORAGES, run_pgvector_bench

    storages = [v.strip() for v in storage.split(",") if v.strip()]
    if not storages or any(v not in STORAGES for v in storages):
        raise typer.BadParameter(
            f"--storage: a comma-separated subset of {','.join(STORAGES)}, got {storage!r}"
        )
    if shared_buffers is not None and not ephemeral:
        raise typer.BadParameter("--shared-buffers needs --ephemeral (the shared server is not restarted)")
    run_pgvector_bench(
        load_settings(),
        quick=quick,
        out=out,
        data=data,
        queries=queries,
        k=k,
        n=n,
        nq=nq,
        hnsw=hnsw,
        probes=_int_list(probes, "--probes"),
        storages=storages,  # type: ignore[arg-type]  # checked against STORAGES above
        prewarm=prewarm,
        server="ephemeral" if ephemeral else "shared",
        shared_buffers=shared_buffers,
        profile=profile,
    )


@app.command()
def ingest(quick: bool = QUICK, out: Path | None = OUT) -> None:
    """Edges/s Kafka→Neo4j through the edge processor vs a bare batched UNWIND writer."""
    from wavegraph.bench.ingest import run_ingest_bench

    run_ingest_bench(load_settings(), quick=quick, out=out)


@app.command()
def search(
    quick: bool = QUICK,
    out: Path | None = OUT,
    speech: bool = typer.Option(True, "--speech/--no-speech", help="Also espeak-ng + Whisper transcripts."),
) -> None:
    """Search recall@5/MRR (lexical, semantic, hybrid) and p50/p95 in-process vs HTTP."""
    from wavegraph.bench.search import run_search_bench

    run_search_bench(load_settings(), quick=quick, out=out, speech=speech)


@app.command()
def explain(quick: bool = QUICK, out: Path | None = OUT) -> None:
    """p95 of /v1/explain (1 and 2 hops, a node of degree ≥ 1,000) next to the bare Cypher (goal ≤ 3×)."""
    from wavegraph.bench.explain import run_explain_bench

    run_explain_bench(load_settings(), quick=quick, out=out)


@app.command()
def dp(quick: bool = QUICK, out: Path | None = OUT) -> None:
    """DP noise vs theory for every statistic (variance ratio, bias, p95) and ledger spends/s, overspend."""
    from wavegraph.bench.dp import run_dp_bench

    run_dp_bench(load_settings(), quick=quick, out=out)


@app.command()
def cache(
    quick: bool = QUICK,
    out: Path | None = OUT,
    trace: Path | None = typer.Option(
        None, "--trace", help="One request a line: '<seconds since start> <key>'."
    ),
) -> None:
    """Response-cache TTL: PI vs fixed TTL vs d-TTL on the real Redis (settled error, overshoot)."""
    from wavegraph.bench.cache import run_cache_bench

    run_cache_bench(load_settings(), trace=trace, quick=quick, out=out)
