"""``wavegraph chaos graph-failover``, short version: SIGKILL one of two graph-job instances; the other
takes its tenants over and their NodeEvents end equal to the single-instance result.

Runs on the shared single broker (the failover is the consumer group's, whatever the broker count);
the full run, ``wavegraph chaos graph-failover``, uses a throwaway 3-broker cluster (RF 3)."""

from __future__ import annotations

import pytest

from wavegraph.loadtest.graph_failover import L1_GOAL, FailoverPlan, run_graph_failover
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


async def test_the_survivor_takes_the_killed_instances_tenants_over(services: Settings) -> None:
    report = await run_graph_failover(services, FailoverPlan(tenants=4, nodes=80, edges=300, timeout_s=90))
    failed = [name for name, held in report["checks"].items() if not held]
    assert not failed, f"{failed}: {report}"
    moved = [r for r in report["rows"] if r["moved"]]
    assert moved and all(r["l1"] <= L1_GOAL for r in moved)
    # the takeover read the moved tenants' partitions from the log and kept its own without reading
    (takeover,) = [a for a in report["survivor_assignments"] if a["partitions"]][-1:]
    assert len(takeover["partitions"]) == report["partitions"] and takeover["read"] != "{}"
    assert report["survivor_tenants"] > 0 and report["survivor_kept"]  # tenants spread over partitions
    assert report["first_event_of_a_moved_tenant_s"] is not None  # the moved tenants' events went on
