"""The embedding job (``wavegraph run graph``): edges → graph state → PageRank → NodeEvents; embeddings.

``wavegraph.edges.v1`` is consumed by its own consumer group (``<group_prefix>.graph``) through the
:class:`~wavegraph.streams.processor.StreamProcessor` loop, validated by the same
:class:`~wavegraph.processors.edges.EdgeDecoder` as the edge processor (invalid records → dead letters).
:class:`GraphJob` is the loop's sink. Per batch it

1. applies the events to each tenant's graph — one weighted digraph per tenant, the weights of a pair's
   relationship types summed, newest event per typed edge wins, deletes leave tombstones so arrival
   order across partitions does not matter (:mod:`~wavegraph.processors.graph_edges`);
2. brings PageRank up to date incrementally (:class:`~wavegraph.processors.graph_tenant.TenantGraph`);
3. publishes ``wavegraph.nodes.v1`` events for the nodes whose score changed beyond the publish budget
   (new nodes, then the largest changes until the published scores are within ``publish_l1`` in L1,
   at most ``max_node_events`` per tenant and batch), keyed ``tenant/node``, and awaits the broker's
   acknowledgement (acks=all) — only then does ``flush`` return and the loop commit the offsets;
4. starts an embedding recompute for every tenant where the edges changed (added, re-weighted or
   removed pairs, plus new nodes) since the last recompute exceed ``graph.recompute_fraction`` of its
   edges (:mod:`~wavegraph.processors.graph_recompute`).

Commit rule: a committed offset covers exactly the events whose graph change is in the state and whose
NodeEvents the broker acknowledged. The embedding stores (Neo4j ``haa``, PostgreSQL
``node_embeddings``) are written asynchronously to commits: they are a function of the graph, which a
restart rebuilds, so they need no offset (a restart recomputes them).

State on restart: rebuilt from the edge topic, from the beginning up to the group's committed offsets,
by a separate consumer that never commits (:mod:`~wavegraph.processors.graph_bootstrap`); then the
group continues where it committed. Run one instance: each instance holds whole tenant graphs, and
partitions carry edges of every tenant, so a second instance in the group would split the graphs.

Replays are idempotent: a replayed event changes no weight, so nothing is recomputed or published for
it; NodeEvents repeated after a crash carry the same id ``id(tenant, node, embedding_version)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from wavegraph.errors import SinkBackpressureError
from wavegraph.events import EdgeEvent, NodeEvent, encode
from wavegraph.processors.edges import edge_decoder, neo4j_driver
from wavegraph.processors.graph_bootstrap import rebuild_from_topic
from wavegraph.processors.graph_embed import EmbeddingParams
from wavegraph.processors.graph_progress import JobProgress, NoProgress, terminal_progress
from wavegraph.processors.graph_recompute import Recomputer
from wavegraph.processors.graph_tenant import FloatArray, IndexArray, TenantGraph
from wavegraph.processors.node_store import EmbeddingStore, NodeStore, open_pool
from wavegraph.settings import Settings
from wavegraph.streams.processor import StreamProcessor
from wavegraph.streams.producer import make_producer
from wavegraph.streams.sink import Item, Rejection

__all__ = ["GraphJob", "GraphJobOptions", "run_graph"]

log = logging.getLogger(__name__)

PUBLISH_L1 = 1e-7
MAX_NODE_EVENTS = 10_000


@dataclass(frozen=True)
class GraphJobOptions:
    """What the job does beyond ``settings.graph``; :meth:`from_settings` reads the proposed settings
    ``graph.embedding``, ``graph.publish_l1`` and ``graph.max_node_events`` once they exist."""

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
    """The graph job's sink (``write`` buffers, ``flush`` applies, publishes and acks) plus the rebuild
    hooks and the recomputes (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        store: EmbeddingStore,
        *,
        options: GraphJobOptions | None = None,
        progress: JobProgress | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.options = options or GraphJobOptions.from_settings(settings)
        self.topic = settings.kafka.topics.nodes
        self.graphs: dict[str, TenantGraph] = {}
        self.recomputer = Recomputer(
            store,
            self.options.embedding,
            fraction=self.options.recompute_fraction,
            progress=progress or NoProgress(),
            retry_after_s=self.options.retry_after_s,
        )
        self.node_events = 0
        self._buffer: list[Item[EdgeEvent]] = []
        self._unpublished: set[str] = set()  # tenants with score changes left over by the cap or a failure

    @property
    def stats(self) -> dict[str, int]:
        return {"node_events": self.node_events, **self.recomputer.stats}

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

    # -- rebuild at start -----------------------------------------------------------------------------
    def rebuild_apply(self, events: list[EdgeEvent]) -> None:
        """Apply already-committed events to the graphs (no PageRank, nothing published)."""
        for tenant, evs in _by_tenant(events).items():
            self.graph(tenant).apply(evs)

    async def finish_rebuild(self) -> None:
        """Solve PageRank on the rebuilt graphs (in a thread: it is a full solve), count their scores as
        published, mark them stale so their embeddings are recomputed, and start those recomputes."""
        for g in self.graphs.values():
            await asyncio.to_thread(g.start_pagerank, published=True)
            g.stale = g.state.num_nodes > 0
            log.info("graph: rebuilt %s: %d nodes, %d edges", g.tenant, g.state.num_nodes, g.state.num_edges)
        self.recomputer.schedule(self.graphs)

    # -- the sink contract ----------------------------------------------------------------------------
    async def write(self, batch: list[Item[EdgeEvent]]) -> None:
        self._buffer.extend(batch)

    async def flush(self) -> list[Rejection[EdgeEvent]]:
        """Apply the buffered events, update PageRank, publish the due NodeEvents and await their acks.

        Raises :class:`SinkBackpressureError` when the broker refuses them; the loop then redelivers the
        batch, which changes nothing in the graph, and the next flush sends what is still due."""
        items, self._buffer = self._buffer, []
        for tenant, events in _by_tenant(it.value for it in items).items():
            g = self.graph(tenant)
            change = g.apply(events)
            if change is not None:
                g.update_pagerank(change)
                self._unpublished.add(tenant)
        await self._publish()
        self.recomputer.schedule(self.graphs)
        return []

    async def _publish(self) -> None:
        picks: list[tuple[TenantGraph, IndexArray, FloatArray]] = []
        for tenant in sorted(self._unpublished):
            g = self.graphs[tenant]
            nodes, values = g.due_events(self.options.publish_l1, self.options.max_node_events)
            if nodes.size:
                picks.append((g, nodes, values))
        futures: list[asyncio.Future[object]] = []
        try:
            for g, nodes, values in picks:
                ids = g.state.node_ids
                for i, score in zip(nodes.tolist(), values.tolist(), strict=True):
                    event = NodeEvent(
                        tenant=g.tenant, node=ids[i], pagerank=score, embedding_version=g.version
                    )
                    key = f"{g.tenant}/{ids[i]}".encode()
                    futures.append(await self.producer.send(self.topic, value=encode(event), key=key))
            results = await asyncio.gather(*futures, return_exceptions=True)
        except KafkaError as exc:
            await asyncio.gather(*futures, return_exceptions=True)
            raise self._backpressure(exc) from exc
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise self._backpressure(failed[0])
        self._unpublished.clear()
        for g, nodes, values in picks:
            g.mark_published(nodes, values)
            self.node_events += int(nodes.size)
            if nodes.size >= self.options.max_node_events:
                self._unpublished.add(g.tenant)  # capped: the rest goes with the next batch

    def _backpressure(self, exc: BaseException) -> SinkBackpressureError:
        retry = self.settings.runtime.default_retry_after_s
        return SinkBackpressureError(retry, f"{self.topic} refused node events: {exc!r}")

    async def aclose(self) -> None:
        """Let running recomputes finish within ``runtime.shutdown_timeout_s``, then cancel them."""
        await self.recomputer.aclose(self.settings.runtime.shutdown_timeout_s)


def _by_tenant(events: Iterable[EdgeEvent]) -> dict[str, list[EdgeEvent]]:
    out: dict[str, list[EdgeEvent]] = defaultdict(list)
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
    """Run the embedding job until ``stop`` is set; return its counters.

    ``started`` is set once the rebuild is done and the consumer is running. ``progress`` defaults to
    rich progress bars when stderr is a terminal.
    """
    stats: dict[str, int] = {}
    async with AsyncExitStack() as stack:
        if progress is None:
            progress = stack.enter_context(terminal_progress())
        producer = make_producer(settings.kafka, client_id="wavegraph-graph-nodes")
        await producer.start()
        stack.push_async_callback(producer.stop)
        driver = neo4j_driver(settings.neo4j)
        stack.push_async_callback(driver.close)
        pool = await open_pool(settings.postgres)
        stack.push_async_callback(pool.close)
        job = GraphJob(settings, producer, NodeStore(driver, pool), options=options, progress=progress)
        stack.push_async_callback(job.aclose)  # first on exit: recomputes end before their clients close
        await job.start()
        decoder = edge_decoder(settings)
        proc: StreamProcessor[EdgeEvent] = StreamProcessor(
            settings, "graph", [settings.kafka.topics.edges], decoder, [job]
        )
        if started is not None:
            proc.started = started
        stats["bootstrapped"] = await rebuild_from_topic(
            settings.kafka,
            settings.kafka.topics.edges,
            proc.group_id,
            decoder,
            job.rebuild_apply,
            stop,
            progress=progress,
        )
        if not stop.is_set():
            await job.finish_rebuild()
            await proc.run(stop)
        stats.update(proc.stats)
    stats.update(job.stats)
    stats["tenants"] = len(job.graphs)
    stats["nodes"] = sum(g.state.num_nodes for g in job.graphs.values())
    return stats
