"""``wavegraph graph pagerank | poincare | haa | node2vec | graphwave``: the analytics on an edge list.

Input: a CSV/TSV file ``src,dst[,weight]`` (header optional). Output: ``.csv``/``.tsv`` (a header row,
the node id first, then the score or the vector's columns) or ``.parquet``. No Kafka needed.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from wavegraph.processors.graph.io import SUFFIXES

app = typer.Typer(help="Graph analytics on an edge list file (no Kafka needed).", no_args_is_help=True)

EDGES = typer.Option(..., "--edges", exists=True, dir_okay=False, help="CSV/TSV: src,dst[,weight].")
OUT = typer.Option(..., "--out", help="Output file: .csv, .tsv or .parquet.")


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in SUFFIXES:
        raise typer.BadParameter(
            f"{out}: the output must end in one of {', '.join(SUFFIXES)}", param_hint="--out"
        )


def _done(out: Path, rows: int, what: str) -> None:
    Console().print(f"wrote {what} of [bold]{rows}[/] nodes to {out}")


@app.command()
def pagerank(
    edges: Path = EDGES,
    out: Path = OUT,
    damping: float = typer.Option(0.85, min=0.0, max=0.999, help="Damping factor."),
    tol: float = typer.Option(1e-10, min=0.0, help="L1 tolerance."),
) -> None:
    """PageRank (networkx conventions: weights give transition probabilities, dangling mass uniform)."""
    from wavegraph.processors.graph.io import write_scores
    from wavegraph.processors.graph.pagerank import pagerank_scores

    _check_out(out)
    scores = pagerank_scores(edges, damping=damping, tol=tol)
    write_scores(out, scores, column="pagerank")
    _done(out, len(scores), "PageRank")


@app.command()
def poincare(
    edges: Path = EDGES,
    out: Path = OUT,
    curvature: float = typer.Option(-1.0, max=-1e-9, help="Curvature κ < 0."),
    dim: int = typer.Option(8, min=2, help="Dimension of the spectral embedding mapped into the ball."),
    center: str | None = typer.Option(None, help="Recenter the ball on this node."),
    directed: bool = typer.Option(False, help="Treat edges as directed."),
) -> None:
    """Poincaré-ball embeddings exp₀(spectral embedding), optionally recentered on a node."""
    from wavegraph.processors.graph.haa import poincare_from_edges
    from wavegraph.processors.graph.io import write_node_table
    from wavegraph.processors.graph.state import read_edge_list

    _check_out(out)
    ids, points = poincare_from_edges(
        read_edge_list(edges), curvature=curvature, dim=dim, center=center, directed=directed
    )
    write_node_table(out, ids, {"x": points})
    _done(out, len(ids), "Poincaré points")


@app.command()
def haa(
    edges: Path = EDGES,
    out: Path = OUT,
    curvature: float = typer.Option(-1.0, max=-1e-9, help="Curvature κ < 0."),
    tau: float = typer.Option(1.0, min=1e-9, help="Attention temperature τ."),
    dim: int = typer.Option(8, min=2, help="Dimension of the spectral embedding."),
    attention_out: Path | None = typer.Option(
        None, help="Also write the per-edge attention (src,dst,weight)."
    ),
    directed: bool = typer.Option(False, help="Treat edges as directed."),
) -> None:
    """Hyperbolic attention aggregation: α-weighted gyro-midpoint of each node's neighbours."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from wavegraph.processors.graph.haa import attention_table, haa_from_edges
    from wavegraph.processors.graph.io import write_node_table
    from wavegraph.processors.graph.state import read_edge_list

    _check_out(out)
    ids, vectors, attention = haa_from_edges(
        read_edge_list(edges), curvature=curvature, tau=tau, dim=dim, directed=directed
    )
    write_node_table(out, ids, {"haa": vectors})
    if attention_out is not None:
        table = attention_table(ids, attention)
        if attention_out.suffix.lower() in (".parquet", ".pq"):
            pq.write_table(table, attention_out)
        else:
            pa_csv.write_csv(table, attention_out)
    _done(out, len(ids), "HAA vectors")


@app.command()
def node2vec(
    edges: Path = EDGES,
    out: Path = OUT,
    p: float = typer.Option(1.0, min=1e-6, help="Return parameter."),
    q: float = typer.Option(1.0, min=1e-6, help="In-out parameter."),
    dim: int = typer.Option(64, min=2),
    walk_length: int = typer.Option(40, min=2),
    walks_per_node: int = typer.Option(10, min=1),
    window: int = typer.Option(5, min=1),
    epochs: int = typer.Option(1, min=1),
    seed: int = typer.Option(0),
    best_pq: Path | None = typer.Option(None, help="Take p, q from this best_pq.json (hash must match)."),
    search_minutes: float | None = typer.Option(
        None,
        min=0.01,
        help="Search (p, q) by link-prediction AUC for this long; writes best_pq.json beside --out.",
    ),
) -> None:
    """Node2Vec: biased second-order walks + skip-gram (gensim), optionally after a timed (p, q) search."""
    from rich.progress import Progress

    from wavegraph.processors.graph.io import write_node_table
    from wavegraph.processors.graph.node2vec import Node2VecConfig
    from wavegraph.processors.graph.pq_search import node2vec_from_edges, search_pq
    from wavegraph.processors.graph.state import GraphState, read_edge_list

    _check_out(out)
    edge_list = read_edge_list(edges)
    config = Node2VecConfig(
        dim=dim,
        walk_length=walk_length,
        walks_per_node=walks_per_node,
        window=window,
        epochs=epochs,
        seed=seed,
    )
    if search_minutes is not None:
        best_file = out.with_name("best_pq.json")
        with Progress() as progress:
            task = progress.add_task("searching (p, q)", total=None)
            result = search_pq(
                GraphState.from_edges(edge_list.src, edge_list.dst, edge_list.weight),
                max_minutes=search_minutes,
                out=best_file,
                config=config,
                on_trial=lambda *_: progress.advance(task),
            )
        Console().print(f"best (p, q) = ({result.p}, {result.q}), AUC {result.score:.3f} → {best_file}")
        best_pq = best_file
    ids, vectors, (p_used, q_used) = node2vec_from_edges(edge_list, p=p, q=q, config=config, best_pq=best_pq)
    write_node_table(out, ids, {"n2v": vectors})
    _done(out, len(ids), f"Node2Vec vectors (p={p_used}, q={q_used})")


@app.command()
def graphwave(
    edges: Path = EDGES,
    out: Path = OUT,
    n_scales: int = typer.Option(2, min=1, help="Number of heat scales chosen from the spectrum."),
    order: int | None = typer.Option(None, min=2, help="Chebyshev terms (default: from the tolerance)."),
    device: str = typer.Option("cpu", help="cpu or gpu (CuPy)."),
) -> None:
    """GraphWave structural embeddings (heat wavelets, Chebyshev, characteristic function)."""
    from rich.progress import Progress

    from wavegraph.processors.graph.graphwave import graphwave_from_edges
    from wavegraph.processors.graph.io import write_node_table
    from wavegraph.processors.graph.state import read_edge_list

    _check_out(out)
    if device not in ("cpu", "gpu"):
        raise typer.BadParameter("device must be cpu or gpu", param_hint="--device")
    with Progress() as progress:
        task = progress.add_task("graphwave", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        ids, emb = graphwave_from_edges(
            read_edge_list(edges),
            n_scales=n_scales,
            order=order,
            device=device,  # type: ignore[arg-type]
            progress=tick,
        )
    write_node_table(out, ids, {"gw": emb.vectors})
    _done(out, len(ids), "GraphWave vectors")
