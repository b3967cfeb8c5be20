"""A Neo4j answer no retry can fix stops ``wavegraph run edges`` with one sentence, not a crash loop."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import orjson
import pytest

from wavegraph.settings import Settings
from wavegraph.streams.publish import publish_values
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services


async def test_a_missing_database_stops_the_edge_processor_with_one_sentence(services: Settings) -> None:
    """The database name is wrong for real (Neo4j answers DatabaseNotFound); the command exits 2 with
    one line on stderr instead of retrying the batch forever or dying with a traceback."""
    run = uuid.uuid4().hex[:10]
    edges, dlq = f"test.fatal.edges.{run}", f"test.fatal.dlq.{run}"
    await ensure_topics(services.kafka, [edges, dlq], partitions=1)
    try:
        value = orjson.dumps({"tenant": "acme", "src": "a", "dst": "b", "ts": 1.0})
        await publish_values(services.kafka, edges, [value])
        env = {
            **os.environ,
            "WAVEGRAPH_KAFKA__TOPICS__EDGES": edges,
            "WAVEGRAPH_KAFKA__TOPICS__DLQ": dlq,
            "WAVEGRAPH_NEO4J__DATABASE": "nosuchdb",
            "WAVEGRAPH_RUNTIME__GROUP_PREFIX": f"fatal-{run}",
        }
        done = subprocess.run(
            [sys.executable, "-m", "wavegraph.cli", "run", "edges"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
    finally:
        await delete_topics(services.kafka, [edges, dlq])
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "DatabaseNotFound" in errors[0], stderr
    assert "Traceback" not in stderr
