"""``wavegraph chaos rebalance``, short version: SIGKILL one of three edge workers under load and start
a fourth; nothing acknowledged is lost or doubled in Neo4j, every revocation is flushed and committed.

This short version runs on the shared single broker (with a 6-partition topic of its own): the
rebalance is the consumer group's, whatever the broker count. The full run,
``wavegraph chaos rebalance``, uses a throwaway 3-broker cluster (RF 3)."""

from __future__ import annotations

import pytest

from wavegraph.loadtest.rebalance import RebalancePlan, run_rebalance
from wavegraph.loadtest.scope import private_services
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


async def test_a_killed_worker_and_a_new_one_lose_and_double_nothing(services: Settings) -> None:
    plan = RebalancePlan(workers=3, rate=300.0, seconds=22.0, kill_at_s=6.0, join_at_s=11.0)
    async with private_services(services, "redis") as env:  # the breaker state key is per Redis
        report = await run_rebalance(env, plan)
    failed = [name for name, held in report["checks"].items() if not held]
    assert not failed, f"{failed}; graph: {report['graph']}; warnings: {report['revocation_warnings']}"
    first, kill, join = report["rows"]
    assert (first["event"], kill["event"], join["event"]) == ("first commit", "kill", "join")
    assert 0 < first["committed"] <= kill["committed"]  # the workers were working when one was killed
    accepted = report["accepted"]
    assert accepted > 0.9 * plan.rate * plan.seconds
    assert (report["graph"]["found"], report["lost"], report["duplicates"]) == (accepted, 0, 0)
    assert report["committed_end"] == accepted > join["committed"] >= kill["committed"]
