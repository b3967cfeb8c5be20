"""Write per-node results (scores or vectors) to CSV or Parquet, for every ``wavegraph graph`` command.

One row per node: the node id first, then the values. A 1-D array becomes one column named after its
key; a 2-D array ``(n, k)`` becomes ``k`` columns ``<key>_0 … <key>_{k-1}``, so the CSV and the Parquet
file have the same flat layout (``pandas.read_csv`` / ``pyarrow.parquet.read_table`` give the same
table). CSV files have a header row; floats are written in their shortest round-trip form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

__all__ = ["SUFFIXES", "node_table", "write_node_table", "write_scores"]

SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def node_table(
    node_ids: Sequence[str], columns: Mapping[str, npt.ArrayLike], *, id_column: str = "node"
) -> pa.Table:
    """An Arrow table: ``id_column`` (strings) then each entry of ``columns`` (see the module docstring)."""
    n = len(node_ids)
    names = [id_column]
    arrays: list[pa.Array] = [pa.array([str(i) for i in node_ids], type=pa.string())]
    for key, values in columns.items():
        a = np.asarray(values)
        if a.shape[:1] != (n,) or a.ndim not in (1, 2):
            raise ValueError(f"column {key!r}: expected shape ({n},) or ({n}, k), got {a.shape}")
        if a.ndim == 1:
            names.append(key)
            arrays.append(pa.array(a))
        else:
            for j in range(a.shape[1]):
                names.append(f"{key}_{j}")
                arrays.append(pa.array(np.ascontiguousarray(a[:, j])))
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names: {names}")
    return pa.Table.from_arrays(arrays, names=names)


def write_node_table(
    path: str | Path,
    node_ids: Sequence[str],
    columns: Mapping[str, npt.ArrayLike],
    *,
    id_column: str = "node",
) -> Path:
    """Write the table to ``path``; the suffix picks the format (``.csv``, ``.tsv``, ``.parquet``/``.pq``).
    Parent directories are created. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: output must end in one of {', '.join(SUFFIXES)}")
    table = node_table(node_ids, columns, id_column=id_column)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".parquet", ".pq"):
        pq.write_table(table, path)
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        pa_csv.write_csv(
            table, path, write_options=pa_csv.WriteOptions(delimiter=delimiter, quoting_style="needed")
        )
    return path


def write_scores(path: str | Path, scores: Mapping[str, float], *, column: str = "score") -> Path:
    """Write ``{node id: score}`` (e.g. :func:`~wavegraph.processors.graph.pagerank.pagerank_scores`)."""
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    return write_node_table(path, list(scores), {column: values})
