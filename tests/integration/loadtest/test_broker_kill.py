"""``wavegraph chaos broker-kill``, short version: SIGKILL a partition leader of a real 3-broker cluster.

The cluster (3 combined broker+controller nodes, 256 MiB heap each) and a Redis are throwaway
instances started for this test; the edge processor writes to the shared Neo4j under the run's own
tenant. The full-length run is ``wavegraph chaos broker-kill``, which also starts the killed broker again
and waits for every replica to be back in sync (restarting one broker of a running cluster is covered
by ``tests/integration/devservices/test_cluster.py``).
"""

from __future__ import annotations

import pytest

from wavegraph.devservices.kafka import brokers, with_brokers
from wavegraph.loadtest.broker_kill import BrokerKillPlan, run_broker_kill
from wavegraph.loadtest.scope import private_services
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


async def test_killing_a_partition_leader_loses_no_acknowledged_event(services: Settings) -> None:
    three = with_brokers(services, 3)
    three = three.model_copy(update={"kafka": three.kafka.model_copy(update={"heap": "256m"})})
    plan = BrokerKillPlan(rate=200.0, warmup_s=3.0, recovery_s=3.0, rejoin=False)
    async with private_services(three, "kafka", "redis") as env:
        assert env.kafka.port != services.kafka.port  # never the shared broker
        report = await run_broker_kill(env, brokers(env), plan)
    failed = [name for name, held in report["checks"].items() if not held]
    assert not failed, f"{failed}; log: {report['log']}; graph: {report['graph']}"
    assert report["replicas"] and all(sorted(r) == [1, 2, 3] for r in report["replicas"].values())
    assert report["min_insync_replicas"] == 2
    killed = report["killed_broker"]
    assert report["new_leader"] in {1, 2, 3} - {killed}
    assert killed in report["isr_before"] and killed not in report["isr_after"]
    assert len(report["isr_after"]) == 2  # min.insync.replicas still met: acks=all writes go on
    accepted = report["accepted"]
    assert accepted == report["rows"][0]["offered_events"] > 0
    assert (report["log"]["found"], report["log"]["lost"], report["log"]["mismatched"]) == (accepted, 0, 0)
    assert (report["graph"]["found"], report["lost"], report["duplicates"]) == (accepted, 0, 0)
    assert 0 < report["acked_after_kill_on_partition"] <= report["acked_after_kill"] < accepted
    assert report["committed_end"] == report["log"]["records"]  # the group committed every record
    assert report["consumed_after_kill"] > 0
