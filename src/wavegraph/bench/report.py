"""Moved to :mod:`wavegraph.report` (shared by benches and load tests); kept while ``bench/ann.py`` moves."""

from wavegraph.report import build_report, write_report

__all__ = ["build_report", "write_report"]
