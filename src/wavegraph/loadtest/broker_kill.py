"""SIGKILL the leader of a partition of a 3-broker cluster under load: no acknowledged event is lost.

The scenario's topic gets 3 replicas and ``min.insync.replicas=2`` (``streams.topics.ensure_topics``
on a 3-broker cluster). A producer (acks=all, idempotent, resending what was not acknowledged) offers
``rate`` keyed edge events/s to it while the edge processor consumes it into Neo4j. After
``warmup_s`` the broker leading ``partition`` gets SIGKILL (no controlled shutdown, no flush); the
controller fences it and elects a leader among the in-sync followers. The load goes on for
``recovery_s`` after the new leader is in the metadata, then stops; the consumer group's lag must
drain. With ``rejoin`` the killed broker is started again (same log directory) and every replica must
be back in sync. Then:

- every acknowledged event is in the topic with its exact key and value (:mod:`.log_check`), the
  events first created after the kill among them, on the killed leader's partition too (producers
  continued);
- the group committed offsets beyond those of the kill (consumers continued) and its lag drained;
- every acknowledged event is in Neo4j exactly once with its content (:mod:`.verify`).

The cluster is passed in by the caller: ``wavegraph chaos broker-kill`` starts a throwaway one
(``devservices.ephemeral``), never the shared broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from wavegraph.devservices import process
from wavegraph.devservices.kafka import Kafka
from wavegraph.events import edge_record_key
from wavegraph.loadtest.kafka_load import produce_at_rate
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.leaders import PartitionState, wait_for_full_isr, wait_for_led, wait_for_new_leader
from wavegraph.loadtest.log_check import check_log
from wavegraph.loadtest.scope import Scope, new_scope, scope_topics
from wavegraph.loadtest.summary import graph_ok, with_checks
from wavegraph.loadtest.verify import verify_run
from wavegraph.loadtest.workers import InlineWorker
from wavegraph.loadtest.workload import EdgeWorkload
from wavegraph.report import build_report
from wavegraph.settings import Settings

BROKERS = 3


@dataclass(frozen=True)
class BrokerKillPlan:
    rate: float = 500.0  # events/s, straight to Kafka
    batch_size: int = 50
    warmup_s: float = 8.0  # load before the kill
    recovery_s: float = 10.0  # load after the new leader is in the metadata
    partition: int = 0  # whose leader is killed
    rejoin: bool = True  # start the killed broker again and wait for every replica to be in sync
    failover_timeout_s: float = 60.0
    drain_timeout_s: float = 120.0
    cleanup: bool = True


def record(workload: EdgeWorkload, i: int) -> tuple[bytes, bytes]:
    """Event ``i`` as the producers send it: keyed by its edge (``events.edge_record_key``)."""
    event = workload.event(i)
    return edge_record_key(event["tenant"], event["src"], event["rel"], event["dst"]), workload.value(i)


async def run_broker_kill(
    settings: Settings, cluster: Sequence[Kafka], plan: BrokerKillPlan
) -> dict[str, Any]:
    """Run the scenario on the cluster ``cluster`` (the brokers ``settings.kafka`` points at)."""
    if len(cluster) < BROKERS or settings.kafka.brokers < BROKERS:
        raise ValueError(f"broker-kill needs a cluster of {BROKERS} brokers, got {len(cluster)}")
    ports = {b.port for b in cluster}
    if ports != set(settings.kafka.broker_ports):
        raise ValueError(
            f"the brokers to kill listen on {sorted(ports)}, the settings use {settings.kafka.bootstrap}"
        )
    scope = new_scope(settings, "brokerkill")
    wl = scope.workload
    started = time.monotonic()
    async with scope_topics(scope):
        before = await wait_for_led(scope.settings.kafka, scope.topic, scope.partitions)
        worker = InlineWorker(scope.settings)
        await worker.start()
        try:
            async with LagProbe(settings.kafka, scope.group, scope.topic, scope.partitions) as lag:
                stop, stop_lag = asyncio.Event(), asyncio.Event()
                async with asyncio.TaskGroup() as tasks:
                    recorder = tasks.create_task(lag.record(stop_lag, every_s=0.5))
                    load = tasks.create_task(
                        produce_at_rate(
                            scope.settings.kafka,
                            scope.topic,
                            lambda i: record(wl, i),
                            rate=plan.rate,
                            seconds=86_400,
                            batch_size=plan.batch_size,
                            stop=stop,
                        )
                    )
                    try:
                        # every client logs each refused connection to the dead broker: the figures say it
                        with _quiet("aiokafka"):
                            fault = await _kill_leader(scope, cluster, plan, lag, worker)
                    finally:
                        stop.set()
                    stats = await load
                    drain_s = await lag.wait_drained(plan.drain_timeout_s)
                    stop_lag.set()
                    await recorder
                fault["committed_end"] = await lag.committed()
                if plan.rejoin:
                    victim = next(b for b in cluster if b.node_id == fault["killed_broker"])
                    fault.update(await _rejoin(scope, victim, plan))
            worker.check()
        finally:
            processor = await worker.close()
        log = await check_log(
            scope.settings.kafka,
            scope.topic,
            scope.partitions,
            wl,
            lambda i: record(wl, i),
            stats.accepted,
            after_ms=fault["killed_at_ms"],
        )
    graph = await verify_run(scope.settings.neo4j, wl, stats.accepted, cleanup=plan.cleanup)
    return _report(
        plan,
        scope,
        before,
        fault,
        stats.summary(),
        log.as_dict(),
        graph.as_dict(),
        processor,
        lag,
        drain_s,
        started,
    )


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Raise ``logger`` to CRITICAL for the block."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


async def _kill_leader(
    scope: Scope, cluster: Sequence[Kafka], plan: BrokerKillPlan, lag: LagProbe, worker: InlineWorker
) -> dict[str, Any]:
    kafka = scope.settings.kafka
    await asyncio.sleep(plan.warmup_s)
    worker.check()
    state = (await wait_for_led(kafka, scope.topic, scope.partitions))[plan.partition]
    victim = next(b for b in cluster if b.node_id == state.leader)
    pid = victim.pid()
    if pid is None:
        raise RuntimeError(
            f"broker {victim.node_id} leads partition {plan.partition} but has no live process"
        )
    committed_at_kill = await lag.committed()
    killed_at = time.time()
    await asyncio.to_thread(process.terminate, pid, signal.SIGKILL, 10.0)  # returns once it is dead
    moved = await wait_for_new_leader(
        kafka, scope.topic, plan.partition, state.leader, plan.failover_timeout_s
    )
    moved_at = time.time()
    await asyncio.sleep(plan.recovery_s)
    worker.check()
    return {
        "partition": plan.partition,
        "killed_broker": state.leader,
        "isr_before": list(state.isr),
        "killed_at_ms": int(killed_at * 1000),
        "new_leader": moved.leader,
        "isr_after": list(moved.isr),
        "failover_s": round(moved_at - killed_at, 2),
        "committed_at_kill": committed_at_kill,
        "committed_after_recovery": await lag.committed(),
    }


async def _rejoin(scope: Scope, victim: Kafka, plan: BrokerKillPlan) -> dict[str, Any]:
    """Start the killed broker again on its own log; wait until every replica is in sync."""
    begin = time.monotonic()
    await victim.up()
    up_s = time.monotonic() - begin
    states = await wait_for_full_isr(scope.settings.kafka, scope.topic, plan.failover_timeout_s)
    return {
        "rejoin_up_s": round(up_s, 2),
        "rejoin_in_sync_s": round(time.monotonic() - begin, 2),
        "isr_rejoined": {str(p): list(s.isr) for p, s in sorted(states.items())},
    }


def _report(
    plan: BrokerKillPlan,
    scope: Scope,
    before: dict[int, PartitionState],
    fault: dict[str, Any],
    producer: dict[str, Any],
    log: dict[str, Any],
    graph: dict[str, Any],
    processor: dict[str, int],
    lag: LagProbe,
    drain_s: float,
    started: float,
) -> dict[str, Any]:
    params = {
        "brokers": scope.settings.kafka.brokers,
        "rate": plan.rate,
        "warmup_s": plan.warmup_s,
        "recovery_s": plan.recovery_s,
        "partitions": scope.partitions,
        "rejoin": plan.rejoin,
    }
    keys = (
        "offered_events",
        "accepted_events",
        "failed_events",
        "retries",
        "p50_ms",
        "p99_ms",
        "max_start_lag_ms",
    )
    report = build_report(
        "chaos_broker_kill",
        params,
        [{"channel": "kafka producer (acks=all)", **{k: producer[k] for k in keys}}],
        None,
    )
    killed_partition = str(fault["partition"])
    replicas = {str(p): list(s.replicas) for p, s in sorted(before.items())}
    report.update(
        replicas=replicas,
        min_insync_replicas=scope.settings.kafka.replication(scope.settings.kafka.brokers)[1],
        **fault,
        accepted=producer["accepted_events"],
        final_loss=producer["offered_events"] - producer["accepted_events"],
        lost_in_log=log["lost"],
        log=log,
        acked_after_kill=log["after"],
        acked_after_kill_on_partition=log["after_by_partition"].get(killed_partition, 0),
        consumed_after_kill=fault["committed_end"] - fault["committed_at_kill"],
        lost=graph["lost"],
        duplicates=graph["duplicates"],
        graph=graph,
        processor=processor,
        max_lag=lag.max_lag,
        lag_timeline=lag.timeline,
        drain_s=round(drain_s, 2),
        elapsed_s=round(time.monotonic() - started, 2),
    )
    checks = {
        "every partition has 3 replicas": all(len(r) == BROKERS for r in replicas.values()),
        "the leader moved off the killed broker": fault["new_leader"] not in (-1, fault["killed_broker"]),
        "final loss 0 (every offered event acknowledged)": report["final_loss"] == 0,
        "every acknowledged event in the topic with its content": log["lost"]
        == log["mismatched"]
        == log["unexpected"]
        == 0,
        "producers continued: events acknowledged after the kill, on its partition too": report[
            "acked_after_kill_on_partition"
        ]
        > 0,
        "consumers continued: offsets committed after the kill": report["consumed_after_kill"] > 0,
        **graph_ok(graph),
    }
    if plan.rejoin:
        checks["the killed broker rejoined: every replica in sync"] = all(
            len(isr) == BROKERS for isr in fault["isr_rejoined"].values()
        )
    return with_checks(report, checks)
