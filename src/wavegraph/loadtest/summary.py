"""The figures a scenario must hold, attached to its report, and the rich summary the commands print.

Every scenario report carries ``checks`` (figure → held?) and ``ok`` (all held), so the commands can
exit non-zero and the tests can say which figure failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from wavegraph.report import write_report


def with_checks(report: dict[str, Any], checks: Mapping[str, bool]) -> dict[str, Any]:
    report["checks"] = {name: bool(held) for name, held in checks.items()}
    report["ok"] = all(report["checks"].values())
    return report


def graph_ok(graph: Mapping[str, Any]) -> dict[str, bool]:
    """The count and content checks every scenario shares."""
    return {
        "no accepted edge lost": graph["lost"] == 0,
        "no duplicates in Neo4j": graph["duplicates"] == 0,
        "content of every edge matches its event": graph["mismatched"] == 0 and graph["unexpected"] == 0,
    }


def print_summary(report: Mapping[str, Any], figures: Sequence[str], console: Console | None = None) -> None:
    """The headline ``figures`` (top-level keys of ``report``) and every check, as two small tables."""
    console = console or Console()
    numbers = Table(title=f"{report['bench']}: figures", show_header=False)
    numbers.add_column("figure")
    numbers.add_column("value", justify="right")
    for key in figures:
        numbers.add_row(key, _fmt(report.get(key)))
    console.print(numbers)
    checks = Table(title=f"{report['bench']}: {'all figures hold' if report.get('ok') else 'FAILED'}")
    checks.add_column("must hold")
    checks.add_column("", justify="center")
    for name, held in report.get("checks", {}).items():
        checks.add_row(name, "[green]yes[/]" if held else "[bold red]NO[/]")
    console.print(checks)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def publish(report: dict[str, Any], figures: Sequence[str], out: Path | None) -> bool:
    """Write ``report`` (default ``bench/results/<bench>.json``), print it with its figures and checks;
    return whether every figure holds."""
    console = Console()
    path = write_report(report, out, console)
    print_summary(report, figures, console)
    console.print(f"report: {path}")
    return bool(report.get("ok", True))
