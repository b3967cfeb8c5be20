"""The bench report's table: one row a line, or transposed when the fields do not fit the console."""

from __future__ import annotations

import io

from rich.console import Console

from wavegraph.report import build_report, print_report


def _printed(report: dict[str, object], width: int) -> list[str]:
    out = io.StringIO()
    print_report(report, Console(file=out, width=width, color_system=None))
    return out.getvalue().splitlines()


def test_a_narrow_table_is_one_row_a_line() -> None:
    report = build_report("demo", {}, [{"case": "a", "p95_ms": 1.5}, {"case": "b", "p95_ms": 2.25}], 1.5)
    lines = _printed(report, 80)
    header = next(line for line in lines if "case" in line)
    assert "p95_ms" in header  # both fields are columns of one header line
    assert any("a" in line and "1.5" in line for line in lines)
    assert any("b" in line and "2.25" in line for line in lines)


def test_a_wide_table_is_transposed_instead_of_squeezed_into_blanks() -> None:
    fields = {f"field_{i:02d}": 1000.0 + i for i in range(24)}
    report = build_report("demo", {}, [{"case": "first", **fields}, {"case": "second", **fields}], None)
    lines = _printed(report, 100)
    assert max(len(line) for line in lines) <= 100
    for name, value in fields.items():  # every field is a line with both rows' values on it
        (line,) = [line for line in lines if name in line]
        assert line.count(f"{value:.4g}") == 2, line
    assert any("first" in line and "second" in line for line in lines)
