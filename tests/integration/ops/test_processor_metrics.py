"""Every processor's metrics port comes from settings; a taken port stops it with one sentence, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


@pytest.mark.parametrize("processor", ["edges", "audio", "graph"])
def test_a_taken_metrics_port_is_one_sentence_and_exit_2(processor: str) -> None:
    """A real listener holds the port; the command must refuse before it touches Kafka (none is
    configured: the bootstrap port below has no broker, so getting past the check would hang, not pass)."""
    with socket.socket() as taken, socket.socket() as nothing:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        nothing.bind(("127.0.0.1", 0))  # bound, never listening: no broker answers there
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            f"WAVEGRAPH_METRICS__{processor.upper()}_PORT": str(port),
            "WAVEGRAPH_KAFKA__PORT": str(nothing.getsockname()[1]),
            "COLUMNS": "400",  # one line on stderr, whatever the terminal
        }
        done = subprocess.run(
            [sys.executable, "-m", "wavegraph.cli", "run", processor],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: metrics port 127.0.0.1:{port} (metrics.{processor}_port) is already in use by another "
        f"program: set WAVEGRAPH_METRICS__{processor.upper()}_PORT to a free port, "
        "or to 0 to serve no metrics"
    ], done.stderr
