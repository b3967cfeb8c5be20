"""``wavegraph demo`` as a command (what ``make demo`` runs after ``services up``), against the real
services: edges into Neo4j, the JFK sample transcribed, search and explain over HTTP, the HTML report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wavegraph.settings import Settings

pytestmark = pytest.mark.services


def test_the_demo_runs_end_to_end_and_writes_its_report(services: Settings, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COLUMNS": "100",
        "WAVEGRAPH_SERVICES__STATE_DIR": str(tmp_path),  # the report lands here, not in .wavegraph/
    }
    done = subprocess.run(
        [sys.executable, "-m", "wavegraph.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    flat = " ".join(out.split())  # rich wraps long lines at the terminal width
    # every Les Misérables edge (254) reached Neo4j, none dead-lettered
    assert "'edges_sent': 254" in out and "'edges_in_neo4j': 254" in out and "'dead_letters': 0" in out
    assert "Valjean" in out.split("summary")[-1]  # the top PageRank character
    assert "ask not what your country can do for you" in flat
    assert "GET /v1/search" in flat and "GET /v1/explain/Valjean" in flat
    report = (tmp_path / "demo-report.html").read_text()
    assert "<html" in report.lower() and "ask what you can do for your country" in report
    for line in out.splitlines():  # readable in the terminal it was given, no library noise
        assert len(line) <= 100, line
        assert "aiokafka" not in line and "neo4j.notifications" not in line, line
