"""Benchmarks behind ``wavegraph bench NAME``; each writes one JSON report (see ../shared/BENCH.md)."""
