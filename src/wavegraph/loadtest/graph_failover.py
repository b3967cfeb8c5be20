"""``chaos graph-failover``: SIGKILL one of two graph-job instances; its tenants go on on the other.

Two ``wavegraph run graph`` processes (instances 0 and 1) share the scenario's tenants through the
group ``<prefix>.graph`` on the tenant-keyed edge copy. The scenario

1. publishes the first half of every tenant's edges and waits until the NodeEvents of every tenant
   equal the single-instance result for that half (both instances at work);
2. SIGKILLs the instance holding the most tenants (read from the instances' own assignment logs),
   publishes the second half (new edges, re-weighted ones, deletions) and waits until the NodeEvents
   of every tenant equal the single-instance result for all edges;
3. reports, per tenant, the L1 distance between the latest NodeEvent of each node and that result,
   the time from the kill to the first NodeEvent of a moved tenant, and what the survivor did with
   its assignment (partitions it *kept* without reading, and the ranges it *read*).

"The single-instance result" is what one graph job holds after every event: the job's own
:class:`~wavegraph.processors.graph_job.tenant.TenantGraph` fed all events of the tenant in one batch
and solved in full (power iteration to ``graph.pagerank_tol``). It holds when every tenant's L1 is at
most ``1e-6``, every node of every tenant has an event, the survivor kept its own partitions (no
reload of what was not lost) and stays alive.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2

from wavegraph.clients import make_consumer
from wavegraph.events import EdgeEvent
from wavegraph.loadtest.scope import wait_for_leaders
from wavegraph.loadtest.summary import with_checks
from wavegraph.loadtest.workers import WorkerProcess, worker_log
from wavegraph.processors.graph_job.tenant import TenantGraph
from wavegraph.report import build_report
from wavegraph.settings import Settings
from wavegraph.streams.publish import edge_key, publish_values
from wavegraph.streams.topics import delete_topics, ensure_topics

__all__ = ["FailoverPlan", "run_graph_failover"]

L1_GOAL = 1e-6
_ASSIGNED = re.compile(r"graph: partitions \[([0-9, ]*)\]: kept \[([0-9, ]*)\], read (\{.*?\})")


@dataclass(frozen=True)
class FailoverPlan:
    tenants: int = 6
    nodes: int = 150  # per tenant
    edges: int = 600  # per tenant and half
    seed: int = 0
    timeout_s: float = 120.0


@dataclass
class _Tenant:
    name: str
    first: list[bytes]
    second: list[bytes]


def _tenant_names(plan: FailoverPlan, run: str, partitions: int) -> list[str]:
    """``plan.tenants`` names spread round-robin over the copy's partitions (a name is taken for
    partition ``i % partitions``), so both instances hold tenants whatever the hash gives."""
    names: list[str] = []
    candidates = (f"lt-gf-{run}-{k}" for k in range(10**6))
    while len(names) < plan.tenants:
        want = len(names) % partitions
        names.append(next(c for c in candidates if _partition_of(c, partitions) == want))
    return names


def _workload(plan: FailoverPlan, names: list[str]) -> list[_Tenant]:
    """Per tenant: a random weighted digraph in two halves; the second adds edges, re-weights a tenth
    of the first half's and deletes another tenth."""
    rng = np.random.default_rng(plan.seed)
    out = []
    for tenant in names:

        def edge(
            src: int, dst: int, weight: float, ts: float, op: str = "upsert", tenant: str = tenant
        ) -> bytes:
            return orjson.dumps(
                {"tenant": tenant, "src": f"n{src}", "dst": f"n{dst}", "weight": weight, "ts": ts, "op": op}
            )

        def pairs(k: int) -> np.ndarray:
            p = rng.integers(0, plan.nodes, size=(k, 2))
            return p[p[:, 0] != p[:, 1]]

        first_pairs = pairs(plan.edges)
        first = [edge(int(a), int(b), float(rng.uniform(0.5, 2.0)), 1.0) for a, b in first_pairs]
        tenth = max(1, len(first_pairs) // 10)
        second = [edge(int(a), int(b), float(rng.uniform(0.5, 2.0)), 2.0) for a, b in pairs(plan.edges)]
        second += [edge(int(a), int(b), float(rng.uniform(2.0, 4.0)), 2.0) for a, b in first_pairs[:tenth]]
        second += [edge(int(a), int(b), 0.0, 2.0, "delete") for a, b in first_pairs[tenth : 2 * tenth]]
        out.append(_Tenant(tenant, first, second))
    return out


def _reference(settings: Settings, tenant: str, values: Sequence[bytes]) -> dict[str, float]:
    """The single-instance result (see the module docstring): node → PageRank."""
    g = TenantGraph(tenant, damping=settings.graph.damping, tol=settings.graph.pagerank_tol)
    g.apply([EdgeEvent.model_validate_json(v) for v in values])
    g.start_pagerank(published=True)
    scores = g.scores()
    return {str(g.state.node_ids[i]): float(scores[i]) for i in range(g.state.num_nodes)}


class _NodeReader:
    """The latest NodeEvent per (tenant, node) on the nodes topic, with the time it was appended."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.latest: dict[tuple[str, str], tuple[float, float]] = {}  # → (pagerank, append time s)
        self._consumer = make_consumer(settings.kafka)

    async def start(self) -> None:
        topic = self.settings.kafka.topics.nodes
        await self._consumer.start()
        tps = [TopicPartition(topic, p) for p in range(self.settings.kafka.partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)

    async def poll(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=200, max_records=50_000)
        for records in batches.values():
            for rec in records:
                ev = orjson.loads(rec.value or b"{}")
                self.latest[(ev["tenant"], ev["node"])] = (float(ev["pagerank"]), rec.timestamp / 1000)

    def l1(self, tenant: str, expected: dict[str, float]) -> float:
        """L1 between the latest events of ``tenant`` and ``expected`` (a missing node counts in full)."""
        return sum(abs(self.latest.get((tenant, n), (0.0, 0.0))[0] - v) for n, v in expected.items())

    def first_after(self, tenants: set[str], t: float) -> float | None:
        times = [ts for (tenant, _), (_, ts) in self.latest.items() if tenant in tenants and ts > t]
        return min(times) if times else None

    async def stop(self) -> None:
        await self._consumer.stop()


def _assignments(log: Path) -> list[dict[str, Any]]:
    """The assignment lines a graph instance logged (partitions, kept, read), oldest first."""
    out = []
    text = log.read_text(errors="replace") if log.exists() else ""
    for m in _ASSIGNED.finditer(text):
        parts = [int(x) for x in m.group(1).split(",") if x.strip()]
        kept = [int(x) for x in m.group(2).split(",") if x.strip()]
        out.append({"partitions": parts, "kept": kept, "read": m.group(3)})
    return out


def _instance(settings: Settings, i: int) -> Settings:
    return settings.model_copy(update={"runtime": settings.runtime.model_copy(update={"instance": i})})


def _partition_of(tenant: str, partitions: int) -> int:
    """The partition the producer's default partitioner gives key ``tenant`` (murmur2, as Java's)."""
    return (murmur2(tenant.encode()) & 0x7FFFFFFF) % partitions


async def _until(
    what: str, timeout_s: float, check: Callable[[], Awaitable[bool]], workers: Sequence[WorkerProcess]
) -> float:
    started = time.monotonic()
    while not await check():
        for w in workers:
            w.check()
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"graph-failover: {what} not reached within {timeout_s:.0f}s")
        await asyncio.sleep(0.3)
    return time.monotonic() - started


async def run_graph_failover(
    settings: Settings, plan: FailoverPlan, *, log_dir: Path | None = None
) -> dict[str, Any]:
    """Run the scenario (see the module docstring) on ``settings``' services; return its report."""
    run = f"{int(time.time() * 1000) % 10**10:010d}"
    tenants = _workload(plan, _tenant_names(plan, run, settings.kafka.partitions))
    topics = settings.kafka.topics.model_copy(
        update={n: f"loadtest.graph-failover.{run}.{n}" for n in ("edges", "edges_by_tenant", "nodes", "dlq")}
    )
    keys = {f"lt-gf-key-{run}-{i}": t.name for i, t in enumerate(tenants)}
    s = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topics": topics}),
            "runtime": settings.runtime.model_copy(update={"group_prefix": f"loadtest.graph-failover.{run}"}),
            "http": settings.http.model_copy(update={"api_keys": {**settings.http.api_keys, **keys}}),
            # PageRank is what is compared; embeddings are recomputed only after a load (stale)
            "graph": settings.graph.model_copy(update={"recompute_fraction": 1.0}),
        }
    )
    names = [topics.edges, topics.edges_by_tenant, topics.nodes, topics.dlq]
    await ensure_topics(s.kafka, names)
    await wait_for_leaders(s.kafka, names, s.kafka.partitions)
    reader = _NodeReader(s)
    await reader.start()
    try:
        with worker_log(log_dir, "graph-0") as log0, worker_log(log_dir, "graph-1") as log1:
            workers = [WorkerProcess(_instance(s, i), log, "graph") for i, log in enumerate((log0, log1))]
            try:
                return await _scenario(s, plan, tenants, workers, reader)
            finally:
                for w in workers:
                    await w.stop()
    finally:
        await reader.stop()
        await delete_topics(s.kafka, names)


async def _scenario(
    s: Settings,
    plan: FailoverPlan,
    tenants: list[_Tenant],
    workers: list[WorkerProcess],
    reader: _NodeReader,
) -> dict[str, Any]:
    for w in workers:
        await w.start()

    async def both_assigned() -> bool:
        return (
            all(_assignments(w.log) for w in workers)
            and sum(len(_assignments(w.log)[-1]["partitions"]) for w in workers) == s.kafka.partitions
        )

    await _until("both instances sharing the partitions", plan.timeout_s, both_assigned, workers)
    first = {t.name: _reference(s, t.name, t.first) for t in tenants}
    everything = {t.name: _reference(s, t.name, t.first + t.second) for t in tenants}

    async def settled(expected: dict[str, dict[str, float]]) -> bool:
        await reader.poll()
        return all(reader.l1(t, exp) <= L1_GOAL for t, exp in expected.items())

    await publish_values(s.kafka, s.kafka.topics.edges, [v for t in tenants for v in t.first], key=edge_key)
    first_s = await _until("the first half's PageRank", plan.timeout_s, lambda: settled(first), workers)

    owner = {p: i for i, w in enumerate(workers) for p in _assignments(w.log)[-1]["partitions"]}
    home = {t.name: _partition_of(t.name, s.kafka.partitions) for t in tenants}
    held = [sum(1 for t in tenants if owner.get(home[t.name]) == i) for i in range(2)]
    victim = int(np.argmax(held))
    survivor = workers[1 - victim]
    moved = {t for t, p in home.items() if owner.get(p) == victim}
    own_before = sorted({p for t, p in home.items() if t not in moved})  # the survivor's partitions with data
    before = len(_assignments(survivor.log))
    killed_at = time.time()
    await workers[victim].kill()
    await publish_values(s.kafka, s.kafka.topics.edges, [v for t in tenants for v in t.second], key=edge_key)
    takeover_s = await _until(
        "every tenant's PageRank after the kill", plan.timeout_s, lambda: settled(everything), [survivor]
    )
    first_moved = reader.first_after(moved, killed_at)
    after = _assignments(survivor.log)[before:]
    l1 = {t: reader.l1(t, exp) for t, exp in everything.items()}
    missing = sum(1 for t, exp in everything.items() for n in exp if (t, n) not in reader.latest)
    survivor_kept = sorted(set().union(*(a["kept"] for a in after))) if after else []
    rows = [{"tenant": t, "moved": t in moved, "l1": v, "nodes": len(everything[t])} for t, v in l1.items()]
    report = build_report("chaos_graph_failover", asdict(plan), rows, None)
    report.update(
        partitions=s.kafka.partitions,
        tenants=len(tenants),
        edge_events=sum(len(t.first) + len(t.second) for t in tenants),
        victim_tenants=len(moved),
        survivor_tenants=len(tenants) - len(moved),
        first_half_s=round(first_s, 2),
        takeover_s=round(takeover_s, 2),
        first_event_of_a_moved_tenant_s=None if first_moved is None else round(first_moved - killed_at, 2),
        l1_max=max(l1.values()),
        nodes_missing=missing,
        survivor_assignments=after,
        survivor_kept=survivor_kept,
        survivor_alive=survivor.alive,
    )
    checks = {
        "the killed instance held tenants": len(moved) > 0,
        f"every tenant's PageRank within L1 {L1_GOAL:g} of the single-instance result": max(l1.values())
        <= L1_GOAL,
        "every node of every tenant has a NodeEvent": missing == 0,
        "the survivor kept its own tenants (no reload)": set(own_before) <= set(survivor_kept),
        "the survivor is alive": survivor.alive,
    }
    return with_checks(report, checks)
