"""The JSON report every ``wavegraph bench`` writes, and the rich table it prints."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


def machine_info() -> dict[str, Any]:
    """CPU count, Python version and GPU (None when there is none)."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "gpu": detect_gpu_name()}


def detect_gpu_name() -> str | None:
    """The name of a usable CUDA GPU through CuPy, or None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            props = cupy.cuda.runtime.getDeviceProperties(0)
            return str(props["name"].decode())
    except Exception:
        return None
    return None


def build_report(
    bench: str, params: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], ratio: float | None
) -> dict[str, Any]:
    """Assemble a report in the shared format: bench, created, machine, params, rows, ratio."""
    return {
        "bench": bench,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "params": dict(params),
        "rows": [dict(r) for r in rows],
        "ratio": ratio,
    }


def write_report(report: Mapping[str, Any], out: Path | None = None, console: Console | None = None) -> Path:
    """Write ``report`` to ``out`` (default ``bench/results/<bench>.json``) and print it as a table."""
    path = out or Path("bench/results") / f"{report['bench']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and CI: do not squeeze wide tables into 80 columns
            console = Console(width=200)
    print_report(report, console)
    return path


def print_report(report: Mapping[str, Any], console: Console) -> None:
    """The rows as a table, one row a line; when that is wider than the console and there are fewer rows
    than fields, transposed (one row a column), since rich squeezes too many columns into blanks."""
    rows = report.get("rows") or []
    table = Table(title=f"bench {report['bench']}  (ratio: {_fmt(report.get('ratio'))})")
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    width = sum(max(len(col), *(len(line[i]) for line in cells)) + 3 for i, col in enumerate(columns))
    if width > console.width and len(rows) < len(columns):
        table.add_column("field", justify="left")
        for number in range(1, len(rows) + 1):
            table.add_column(f"#{number}", justify="right")
        for i, col in enumerate(columns):
            table.add_row(col, *(line[i] for line in cells))
    else:
        for col in columns:
            table.add_column(col, justify="right")
        for line in cells:
            table.add_row(*line)
    console.print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
