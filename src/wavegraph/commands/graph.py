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
