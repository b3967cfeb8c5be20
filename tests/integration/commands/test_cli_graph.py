"""``wavegraph graph pagerank | haa --edges F --out F.csv|.parquet`` as commands (subprocesses): the
files they write hold what an independent reference (networkx) computes, in both formats."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import pytest

EDGES = [("a", "b", 1.0), ("b", "c", 2.0), ("c", "a", 1.0), ("a", "d", 0.5), ("d", "e", 1.0), ("e", "a", 3.0)]


def wavegraph(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wavegraph.cli", *map(str, args)],
        env={**os.environ, "COLUMNS": "1000"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def edge_file(tmp_path: Path) -> Path:
    path = tmp_path / "edges.csv"
    path.write_text("src,dst,weight\n" + "".join(f"{s},{d},{w}\n" for s, d, w in EDGES))
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        header, *rows = list(csv.reader(fh))
    return header, rows


def test_pagerank_to_csv_and_parquet_matches_networkx(edge_file: Path, tmp_path: Path) -> None:
    graph = nx.DiGraph()
    graph.add_weighted_edges_from(EDGES)
    want = nx.pagerank(graph, alpha=0.85, tol=1e-13, max_iter=10_000)
    for name in ("pr.csv", "pr.parquet"):
        out = tmp_path / name
        done = wavegraph("graph", "pagerank", "--edges", edge_file, "--out", out)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"wrote PageRank of 5 nodes to {out}"
        if out.suffix == ".csv":
            header, rows = read_csv(out)
            assert header == ["node", "pagerank"]
            got = {node: float(score) for node, score in rows}
        else:
            table = pq.read_table(out)
            assert table.column_names == ["node", "pagerank"]
            got = dict(zip(table["node"].to_pylist(), table["pagerank"].to_pylist(), strict=True))
        assert set(got) == set(want)
        for node, score in want.items():
            assert got[node] == pytest.approx(score, abs=1e-8), node


def test_haa_csv_and_parquet_hold_the_same_points_inside_the_ball(edge_file: Path, tmp_path: Path) -> None:
    tables = {}
    for name in ("haa.csv", "haa.parquet"):
        out = tmp_path / name
        done = wavegraph("graph", "haa", "--edges", edge_file, "--out", out, "--dim", "3")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"wrote HAA vectors of 5 nodes to {out}"
        if out.suffix == ".csv":
            header, rows = read_csv(out)
            tables[name] = (header, {r[0]: [float(v) for v in r[1:]] for r in rows})
        else:
            table = pq.read_table(out)
            columns = table.column_names
            values = np.column_stack([table[c].to_numpy() for c in columns[1:]])
            tables[name] = (columns, dict(zip(table["node"].to_pylist(), values.tolist(), strict=True)))
    (csv_header, csv_rows), (pq_header, pq_rows) = tables["haa.csv"], tables["haa.parquet"]
    assert csv_header == pq_header == ["node", "haa_0", "haa_1", "haa_2"]
    assert set(csv_rows) == set(pq_rows) == {"a", "b", "c", "d", "e"}
    for node, point in csv_rows.items():
        assert point == pq_rows[node]  # CSV floats are written in their shortest round-trip form
        assert 0.0 < float(np.linalg.norm(point)) < 1.0  # curvature -1: inside the unit ball


def test_an_output_without_a_known_suffix_is_refused_naming_the_option(
    edge_file: Path, tmp_path: Path
) -> None:
    done = wavegraph("graph", "pagerank", "--edges", edge_file, "--out", tmp_path / "pr.json")
    assert done.returncode == 2
    assert "--out" in done.stderr and ".parquet" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "pr.json").exists()
