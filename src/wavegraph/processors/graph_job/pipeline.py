"""The embedding job (``wavegraph run graph``): edges → graph state → PageRank → NodeEvents; embeddings.

Two stages, each a :class:`~wavegraph.streams.processor.StreamProcessor` loop of its own group, run
together by every instance:

- the router (group ``<group_prefix>.graph-route``) consumes ``wavegraph.edges.v1``, validated by the
  same :class:`~wavegraph.processors.edges.decoder.EdgeDecoder` as the edge processor, and republishes
  every valid event keyed by its tenant on ``wavegraph.edges.by-tenant.v1``; invalid records and those
  the :class:`~wavegraph.processors.graph_job.guard.GraphGuard` refuses are dead letters naming the
  original record (:mod:`~wavegraph.processors.graph_job.route`);
- the graph stage (group ``<group_prefix>.graph``) consumes the copy, where a tenant lives on one
  partition: instances started N times (``wavegraph run graph --instances N``) share the tenants by
  sharing its partitions, and take over each other's when one dies
  (:mod:`~wavegraph.processors.graph_job.ownership`: a partition kept through a rebalance keeps its
  state, one taken over is read from the log up to the group's commit, one gone is dropped).

:class:`GraphJob` is the graph stage's sink. Per batch it

1. refuses, as dead letters, the valid events the graph cannot carry
   (:class:`~wavegraph.processors.graph_job.guard.GraphGuard`: weights outside ``[1e-270, 1e270]``, node ids
   whose NodeEvent would not fit ``kafka.max_message_bytes``);
2. applies the rest to each tenant's graph — one weighted digraph per tenant, the weights of a pair's
   relationship types summed, one winner per typed edge decided by ``(ts, delete > upsert, event_id)``,
   deletes leave tombstones so arrival order across partitions does not matter
   (:mod:`~wavegraph.processors.graph_job.edge_table`);
3. brings PageRank up to date incrementally (:class:`~wavegraph.processors.graph_job.tenant.TenantGraph`);
4. publishes ``wavegraph.nodes.v1`` events for the nodes whose score changed beyond the publish budget
   (new nodes, then the largest changes until the published scores are within ``publish_l1`` in L1,
   at most ``max_node_events`` per tenant and flush), keyed ``tenant/node``, and awaits the broker's
   acknowledgement (acks=all) before ``flush`` returns — or, exactly once, stages them for the
   transaction of the next commit (:mod:`~wavegraph.processors.graph_job.publish`).
   What the cap defers goes out with the next
   flush: the job is a :class:`~wavegraph.streams.sink.CommitGate` whose ``next_deadline`` has passed
   while events are deferred, so the loop flushes again as soon as a fetch comes back empty;
5. starts an embedding recompute for every tenant where the edges changed (added, re-weighted or
   removed pairs, plus new nodes) since the last recompute exceed ``graph.recompute_fraction`` of its
   edges (:mod:`~wavegraph.processors.graph_job.recompute`).

What one record can do, and what the job does about it (no single record stops the job):

- a weight ``0 < w < 1e-270`` (``α/d = inf``: the push solver spins on a NaN residual) or ``w > 1e270``
  (a pair's ``fsum`` overflows, out-weights become inf) → **dead letter** (``weight: …``) before the
  graph changes; the rebuild skips the event too.
- a node id whose NodeEvent would exceed ``kafka.max_message_bytes`` (the producer would refuse it on
  every attempt) → **dead letter** (``src: …`` / ``dst: …``) before the graph changes; the rebuild skips
  it too.
- the producer refusing one NodeEvent anyway (``MessageSizeTooLargeError`` from ``send``; unreachable
  after the guard, which applies the producer's own estimate) → that node's event is **skipped**,
  logged and counted (``node_events_refused``) instead of being retried forever; the others are sent.
- the broker not acknowledging (down, timeouts, or a topic configured below ``kafka.max_message_bytes``
  refusing whole batches) → **outage**: :class:`~wavegraph.errors.SinkBackpressureError`, nothing
  committed; what was acknowledged counts as published, the next flush sends the rest.
- an incremental PageRank update raising or giving non-finite scores (a safety net: the guard keeps the
  weights where it cannot) → that tenant's PageRank is **solved again** by power iteration (always
  terminates), logged and counted (``pagerank_resets``); no record is blamed.
- equal ``ts`` for a delete and an upsert of one edge, or for two upserts → a **deterministic winner**
  (the delete; then the larger ``event_id``; then the larger weight).
- the embedding computation raising (in a recompute task) → logged and counted (``recompute_errors``);
  that tenant's recompute **waits for new changes** (the same graph would fail the same way).
- a store refusing a row (PostgreSQL ``DataError`` or a CHECK, Neo4j type or constraint errors) → that
  row is **skipped**, logged and counted (``rows_refused``); the other rows are stored.
- a store being down → logged and counted (``recompute_failures``); **retried** after ``retry_after_s``,
  backing off, with the graph as it is then.

A tenant reaching ``2^31 − 1`` nodes (``GraphState``'s index limit) is not guarded: memory runs out
first. Any other exception in ``flush`` is a bug and propagates (the job stops rather than commit past
work it did not do).

Commit rule: a committed offset covers exactly the events whose graph change is in the state (or that
were dead-lettered). NodeEvents are a projection of that state: the cap may leave some deferred in
memory when the offsets are committed (exactly once: what was staged goes in the commit's transaction).

State on restart and takeover: the tenants of each assigned partition are rebuilt from the tenant-keyed
copy, from the beginning (or from where the state this instance still holds ends) up to the group's
committed offset, by a separate consumer that never commits
(:mod:`~wavegraph.processors.graph_job.bootstrap`), inside the rebalance; then the group continues where
it committed. **What was published is read back**: the latest committed NodeEvent of each loaded node on
the compacted nodes topic (:func:`~wavegraph.processors.graph_job.bootstrap.read_published`), and only
the nodes whose current score differs from it are due (at most ``max_node_events`` per tenant and flush;
deferred updates are therefore never lost to a crash, and nothing is published twice). Why not hold the
commit back while events are deferred (:class:`~wavegraph.streams.sink.CommitGate`)? It is not enough: a
node published after the commit whose score later returns to its committed value, while that return is
deferred, would keep its stale event forever; reading the topic back knows what consumers see. **Exactly
once** (``kafka.exactly_once``): the NodeEvents of a batch are staged and sent in the Kafka transaction
that commits the batch's offsets (:mod:`~wavegraph.processors.graph_job.publish`), so a
``read_committed`` consumer sees them if and only if the offsets moved, and the read-back (also
``read_committed``) sees exactly that. A tenant that moves to another instance is read back the same way
by its new owner; the old owner stops publishing it when the partition is revoked (a batch that outlived
the commit deadline of the rebalance may still send some of its events: the latest value per key is
still right). Recomputes running for a tenant that moved finish on the old owner; the new owner
continues the tenant's version numbers from the store when it loads the tenant.

Replays are idempotent: a replayed event changes no weight, so nothing is recomputed or published for
it. A NodeEvent's id is ``id(tenant, node, embedding_version)``, so one republished after a restart
before a new embedding version is stored repeats the id of the node's last event (with its current
score): the topic is a changelog keyed ``tenant/node`` where the latest value per key wins
(``docs/events.md``), and the key keeps each node on one partition, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition

from wavegraph.clients import make_producer, neo4j_driver, pg_pool
from wavegraph.events import EdgeLike
from wavegraph.processors.edges.decoder import edge_decoder
from wavegraph.processors.graph_job.bootstrap import TenantLoader
from wavegraph.processors.graph_job.embed import EmbeddingParams
from wavegraph.processors.graph_job.guard import GraphGuard
from wavegraph.processors.graph_job.ownership import PartitionTenants
from wavegraph.processors.graph_job.progress import JobProgress, NoProgress
from wavegraph.processors.graph_job.publish import NodePublisher, Pick
from wavegraph.processors.graph_job.recompute import Recomputer
from wavegraph.processors.graph_job.route import TenantRouter
from wavegraph.processors.graph_job.tenant import TenantGraph
from wavegraph.settings import Settings
from wavegraph.sinks.node_embeddings import EmbeddingStore, NodeStore
from wavegraph.streams.pipeline import run_pipeline
from wavegraph.streams.processor import Decoder, StreamProcessor, default_group_id
from wavegraph.streams.sink import Item, Rejection
from wavegraph.streams.topics import ensure_topics
from wavegraph.streams.transactions import transactional_id

__all__ = ["GraphJob", "GraphJobOptions", "run_graph"]

log = logging.getLogger(__name__)

PUBLISH_L1 = 1e-7
MAX_NODE_EVENTS = 10_000


@dataclass(frozen=True)
class GraphJobOptions:
    """What the job does beyond ``settings.graph``; :meth:`from_settings` reads ``graph.embedding``,
    ``graph.publish_l1`` and ``graph.max_node_events``."""

    embedding: EmbeddingParams = field(default_factory=EmbeddingParams)
    recompute_fraction: float = 0.1
    publish_l1: float = PUBLISH_L1
    max_node_events: int = MAX_NODE_EVENTS
    store_chunk: int = 1000
    retry_after_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> GraphJobOptions:
        graph = settings.graph
        return cls(
            embedding=EmbeddingParams.from_settings(graph),
            recompute_fraction=graph.recompute_fraction,
            publish_l1=float(getattr(graph, "publish_l1", PUBLISH_L1)),
            max_node_events=int(getattr(graph, "max_node_events", MAX_NODE_EVENTS)),
        )


class GraphJob:
    """The graph job's sink (``write`` buffers, ``flush`` refuses, applies, publishes and acks), its
    commit gate (a flush is due while NodeEvents are deferred), the rebuild hooks and the recomputes
    (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        store: EmbeddingStore,
        *,
        options: GraphJobOptions | None = None,
        progress: JobProgress | None = None,
        group_id: str | None = None,
        transactional: bool = False,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.options = options or GraphJobOptions.from_settings(settings)
        self.topic = settings.kafka.topics.nodes
        self.guard = GraphGuard(settings.kafka.max_message_bytes)
        self.graphs: dict[str, TenantGraph] = {}
        self.recomputer = Recomputer(
            store,
            self.options.embedding,
            fraction=self.options.recompute_fraction,
            progress=progress or NoProgress(),
            retry_after_s=self.options.retry_after_s,
        )
        self.group_id = group_id or default_group_id(settings, "graph")
        self.publisher = NodePublisher(
            producer,
            self.topic,
            settings.runtime.default_retry_after_s,
            transactional=transactional,
        )
        self.rebuild_refused = 0
        self.bootstrapped = 0  # records read to load tenants (at start and on taking over partitions)
        self.restored = 0  # loaded nodes whose latest NodeEvent was read back (not published again)
        self.owned = PartitionTenants()
        self.loader: TenantLoader | None = None  # None: no Kafka behind the job (a test drives it)
        self._load_error: BaseException | None = None
        self._buffer: list[Item[EdgeLike]] = []
        self._unpublished: set[str] = set()  # tenants with score changes left over by the cap or a failure

    @property
    def stats(self) -> dict[str, int]:
        return {
            "node_events": self.publisher.sent,
            "node_events_refused": self.publisher.refused,
            "node_transactions": self.publisher.transactions,
            "node_transactions_aborted": self.publisher.aborted,
            "rebuild_refused": self.rebuild_refused,
            "bootstrapped": self.bootstrapped,
            "restored": self.restored,
            "pagerank_resets": sum(g.pagerank_resets for g in self.graphs.values()),
            **self.recomputer.stats,
        }

    @property
    def deferred(self) -> bool:
        """Whether some tenant may still have NodeEvents due (the cap or a failed send left them)."""
        return bool(self._unpublished)

    async def start(self) -> None:
        """Read the newest stored embedding versions (call before anything else)."""
        await self.recomputer.load_versions()

    def graph(self, tenant: str) -> TenantGraph:
        g = self.graphs.get(tenant)
        if g is None:
            g = self.graphs[tenant] = TenantGraph(
                tenant,
                damping=self.settings.graph.damping,
                tol=self.settings.graph.pagerank_tol,
                version=self.recomputer.versions.get(tenant, 0),
            )
        return g

    # -- loading tenants (at start and on taking over partitions) ----------------------------------
    def rebuild_apply(self, events: list[EdgeLike]) -> None:
        """Apply already-committed events to the graphs (no PageRank, nothing published), skipping those
        the guard refuses (they were dead-lettered when first consumed)."""
        accepted = [ev for ev in events if self.guard.refusal(ev) is None]
        self.rebuild_refused += len(events) - len(accepted)
        for tenant, evs in _by_tenant(accepted).items():
            self.graph(tenant).apply(evs)

    def _load_apply(self, partition: int, events: list[tuple[int, EdgeLike]]) -> None:
        for offset, ev in events:
            self.owned.note(partition, ev.tenant, offset)
        self.bootstrapped += len(events)
        self.rebuild_apply([ev for _, ev in events])

    async def finish_rebuild(
        self,
        tenants: Iterable[str] | None = None,
        published: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        """Solve PageRank on the rebuilt graphs of ``tenants`` (all: None; in a thread: it is a full
        solve), take ``published`` (tenant → node → score on the topic) as what was published — every
        node when None (see "State on restart") — mark the graphs stale so their embeddings are
        recomputed, and start those recomputes."""
        chosen = self.graphs.keys() if tenants is None else [t for t in tenants if t in self.graphs]
        for g in [self.graphs[t] for t in chosen]:
            await asyncio.to_thread(g.start_pagerank, published=False)
            if published is not None:
                g.restore_published(published.get(g.tenant, {}))
                self.restored += len(published.get(g.tenant, {}))
            g.stale = g.state.num_nodes > 0
            if g.state.num_nodes:
                self._unpublished.add(g.tenant)
            log.info("graph: rebuilt %s: %d nodes, %d edges", g.tenant, g.state.num_nodes, g.state.num_edges)
        self.recomputer.schedule(self.graphs)

    async def assigned(self, partitions: Sequence[TopicPartition]) -> None:
        """The rebalance gave this instance ``partitions``: drop the tenants that moved away, keep
        those whose state is current, read what the others need (see
        :mod:`~wavegraph.processors.graph_job.ownership`). A failure is kept and raised by the next
        flush (aiokafka would only log an exception raised here)."""
        if self.loader is None:
            return
        try:
            committed = await self.loader.committed()
            plan = self.owned.settle([tp.partition for tp in partitions], committed)
            for tenant in plan.drop:
                self.graphs.pop(tenant, None)
                self._unpublished.discard(tenant)
            if plan.read:
                await self.recomputer.load_versions()  # others stored versions while they held them
                reached = await self.loader.read(plan.read, self._load_apply)
                for p, offset in reached.items():
                    self.owned.cover(p, offset)
                loaded = self.owned.tenants(plan.read)
                await self.finish_rebuild(loaded, await self.loader.published(loaded))
            self._unpublished |= self.owned.tenants(plan.kept) & self.graphs.keys()  # deferred events
            log.info(
                "graph: partitions %s: kept %s, read %s, dropped %d tenants; holding %d tenants",
                sorted(tp.partition for tp in partitions),
                sorted(plan.kept),
                {p: r for p, r in sorted(plan.read.items())},
                len(plan.drop),
                len(self.graphs),
            )
        except Exception as exc:
            log.exception(
                "graph: loading the tenants of %s failed", sorted(tp.partition for tp in partitions)
            )
            self._load_error = exc

    # -- the sink contract ----------------------------------------------------------------------------
    async def write(self, batch: Sequence[Item[EdgeLike]]) -> None:
        self._buffer.extend(batch)

    async def flush(self) -> list[Rejection[EdgeLike]]:
        """Refuse what the graph cannot carry, apply the rest, update PageRank, publish the due
        NodeEvents and await their acks; return the refused items (dead letters).

        Raises :class:`~wavegraph.errors.SinkBackpressureError` when the broker does not acknowledge;
        the loop then redelivers the batch, which changes nothing in the graph (and is refused again
        where it was), and the next flush sends what is still due."""
        if self._load_error is not None:
            raise RuntimeError(f"loading tenants failed: {self._load_error!r}") from self._load_error
        items, self._buffer = self._buffer, []
        rejected: list[Rejection[EdgeLike]] = []
        accepted: list[EdgeLike] = []
        for it in items:
            self.owned.note(it.partition, it.value.tenant, it.offset)
            reason = self.guard.refusal(it.value)
            if reason is None:
                accepted.append(it.value)
            else:
                rejected.append(Rejection(item=it, reason=reason, code="sink_refused"))
        for tenant, events in _by_tenant(accepted).items():
            g = self.graph(tenant)
            change = g.apply(events)
            if change is not None:
                g.update_pagerank(change)
                self._unpublished.add(tenant)
        await self._publish()
        self.recomputer.schedule(self.graphs)
        return rejected

    # -- the commit gate: nothing is held back, but deferred NodeEvents make a flush due ------------------
    def committable(self, tp: TopicPartition, offset: int) -> int:
        """Every processed offset may be committed (see "State on restart")."""
        return offset

    def next_deadline(self) -> float | None:
        """A deadline already passed (``0.0``) while NodeEvents are deferred, so the loop flushes as soon
        as a fetch comes back empty; ``None`` otherwise."""
        return 0.0 if self._unpublished or self._load_error is not None else None

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Park the tenants of ``partitions`` (kept, not published) until the next assignment says
        whether they stay (:meth:`assigned`)."""
        parked = self.owned.tenants(tp.partition for tp in partitions)
        self.owned.park(tp.partition for tp in partitions)
        self._unpublished -= parked

    # -- exactly once: the NodeEvents in the commit's transaction -------------------------------------
    @property
    def transactional(self) -> bool:
        return self.publisher.transactional

    def owes(self, tp: TopicPartition | None = None) -> bool:
        """Staged NodeEvents make a commit due (whichever partition's records caused them)."""
        return self.publisher.owes

    async def commit_offsets(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Publish the staged NodeEvents and commit ``offsets`` in one transaction."""
        await self.publisher.commit(offsets, self.group_id)
        return offsets

    # -- publishing -----------------------------------------------------------------------------------
    async def _publish(self) -> None:
        picks: list[Pick] = []
        for tenant in sorted(self._unpublished):
            g = self.graphs[tenant]
            nodes, values = g.due_events(self.options.publish_l1, self.options.max_node_events)
            if nodes.size:
                picks.append((g, nodes, values))
        await self.publisher.publish(picks)  # on failure the tenants stay unpublished: all retried
        self._unpublished.clear()
        for g, nodes, _ in picks:
            if nodes.size >= self.options.max_node_events:
                self._unpublished.add(g.tenant)  # capped: the rest goes with the next flush

    async def aclose(self) -> None:
        """Let running recomputes finish within ``runtime.shutdown_timeout_s``, then cancel them."""
        await self.recomputer.aclose(self.settings.runtime.shutdown_timeout_s)


def _by_tenant(events: Iterable[EdgeLike]) -> dict[str, list[EdgeLike]]:
    out: dict[str, list[EdgeLike]] = defaultdict(list)
    for ev in events:
        out[ev.tenant].append(ev)
    return out


async def run_graph(
    settings: Settings,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    *,
    options: GraphJobOptions | None = None,
    progress: JobProgress | None = None,
) -> dict[str, int]:
    """Run the graph job (both stages: the tenant router and the graph) until ``stop`` is set; return
    its counters.

    ``started`` is set once the graph stage's consumer is running (its tenants are loaded inside the
    first rebalance). ``progress`` receives the loads' and recomputes' progress (the CLI passes rich
    bars; default: none). A router that fails sets ``stop`` and its error is raised.
    """
    stats: dict[str, int] = {}
    progress = progress or NoProgress()
    kafka = settings.kafka
    topics = kafka.topics
    await ensure_topics(kafka, [topics.edges_by_tenant])
    group = default_group_id(settings, "graph")
    async with AsyncExitStack() as stack:
        producer = make_producer(
            kafka,
            client_id="wavegraph-graph-nodes",
            transactional_id=transactional_id(kafka, group, settings.runtime.instance)
            if kafka.exactly_once
            else None,
        )
        await producer.start()  # exactly once: fences the open transaction of the worker it replaces
        stack.push_async_callback(producer.stop)
        routing = make_producer(kafka, client_id="wavegraph-graph-route")
        await routing.start()
        stack.push_async_callback(routing.stop)
        driver = neo4j_driver(settings.neo4j)
        stack.push_async_callback(driver.close)
        pool = await pg_pool(settings.postgres, max_size=2)
        stack.push_async_callback(pool.close)
        job = GraphJob(
            settings,
            producer,
            NodeStore(driver, pool),
            options=options,
            progress=progress,
            group_id=group,
            transactional=kafka.exactly_once,
        )
        stack.push_async_callback(job.aclose)  # first on exit: recomputes end before their clients close
        await job.start()
        decoder: Decoder[EdgeLike] = edge_decoder(settings)
        job.loader = TenantLoader(kafka, topics.edges_by_tenant, topics.nodes, group, decoder, stop, progress)
        router = TenantRouter(
            routing, topics.edges_by_tenant, job.guard, settings.runtime.default_retry_after_s
        )
        route: StreamProcessor[EdgeLike] = StreamProcessor(
            settings, "graph-route", [topics.edges], decoder, [router]
        )

        async def run_router(done: asyncio.Event) -> None:
            try:
                await route.run(done)
            except BaseException:
                stop.set()
                raise

        stats.update(
            await run_pipeline(
                settings,
                "graph",
                [topics.edges_by_tenant],
                decoder,
                [job],
                stop,
                started=started,
                background=[run_router],
            )
        )
        stats.update({f"route_{k}": v for k, v in route.stats.items()})
        stats["routed"] = router.routed
    stats["dead_letters"] += stats["route_dead_letters"]
    stats.update(job.stats)
    stats["tenants"] = len(job.graphs)
    stats["nodes"] = sum(g.state.num_nodes for g in job.graphs.values())
    return stats
