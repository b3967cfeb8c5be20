"""The valid edge events the graph job refuses: values its graph, PageRank or NodeEvents cannot carry.

:class:`~wavegraph.processors.edges.decoder.EdgeDecoder` has already checked the schema (finite weight ≥ 0,
bounded ids, …). Two properties of a valid upsert can still break the job, and :class:`GraphGuard`
refuses them with a reason (the record becomes a dead letter, the stream goes on):

- **weight**: a non-zero weight outside ``[MIN_WEIGHT, MAX_WEIGHT]`` = ``[1e-270, 1e270]``. PageRank
  divides by a node's out-weight and multiplies residuals by ``α / d_u``: a source whose only edge weighs
  ``5e-324`` gives ``α / d_u = inf`` and a NaN residual, on which the push solver spins forever; two
  relationship types of ``1e308`` overflow the pair's sum (``math.fsum`` raises) and make out-weights
  infinite. Inside the range (``2^-897 < 1e-270``, ``1e270 < 2^897``), with fewer than ``2^64`` typed
  edges per source and scores below ``2^34``, every sum, quotient and product the solver forms stays
  below ``2^961``: finite. Zero stays allowed (a source whose pairs all weigh 0 is dangling).
- **node id → NodeEvent size**: the ``wavegraph.nodes.v1`` record of an endpoint (value, key
  ``tenant/node``, record overhead as aiokafka estimates it) must fit ``kafka.max_message_bytes``, the
  producer's ``max_request_size``; otherwise the producer would refuse that node's event on every
  attempt. The size is taken for the worst score and version (23-character float, 19-digit version).

Both checks are functions of the event and the settings only, so the rebuild at start
(:mod:`~wavegraph.processors.graph_job.bootstrap`) refuses exactly what the live job dead-lettered.
"""

from __future__ import annotations

import functools

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from pydantic import ValidationError

from wavegraph.events import EdgeLike, NodeEvent, encode

__all__ = ["MAX_WEIGHT", "MIN_WEIGHT", "GraphGuard", "node_record_bytes"]

MIN_WEIGHT = 1e-270
MAX_WEIGHT = 1e270
WORST_PAGERANK = 2.2250738585072014e-308  # the longest float orjson writes for a score in [0, 1]: 23 chars
WORST_VERSION = 2**63 - 1


def node_record_bytes(tenant: str, node: str) -> int:
    """aiokafka's size estimate of the NodeEvent record of ``node`` with the longest score and version."""
    event = NodeEvent(tenant=tenant, node=node, pagerank=WORST_PAGERANK, embedding_version=WORST_VERSION)
    key = f"{tenant}/{node}".encode()
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, encode(event), []))


@functools.cache
def _record_bound(tenant_len: int, node_len: int) -> int:
    """An upper bound of :func:`node_record_bytes` from the lengths alone (ASCII tenant; a node char
    takes at most 6 bytes in JSON, ``\\u001f``, and 4 in UTF-8)."""
    worst = NodeEvent(tenant="t", node="n", pagerank=WORST_PAGERANK, embedding_version=WORST_VERSION)
    base = len(encode(worst))
    value = base - 2 + tenant_len + 6 * node_len
    key = tenant_len + 1 + 4 * node_len
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(bytes(key), bytes(value), []))


class GraphGuard:
    """Refuses the edge events the graph job cannot process (see the module docstring)."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes

    def refusal(self, event: EdgeLike) -> str | None:
        """The dead-letter reason for ``event`` (``field: problem``), or ``None`` when it is accepted."""
        if event.op != "upsert":
            return None  # a delete adds no node and no weight: always safe (it may leave a tombstone)
        if event.weight != 0.0 and not MIN_WEIGHT <= event.weight <= MAX_WEIGHT:
            return (
                f"weight: {event.weight!r} is outside the range the graph job can rank "
                f"(0 or {MIN_WEIGHT:g} to {MAX_WEIGHT:g})"
            )
        for field in ("src", "dst"):
            problem = self._node_problem(event.tenant, getattr(event, field))
            if problem is not None:
                return f"{field}: {problem}"
        return None

    def _node_problem(self, tenant: str, node: str) -> str | None:
        if _record_bound(len(tenant), len(node)) <= self.max_message_bytes:
            return None
        try:
            size = node_record_bytes(tenant, node)
        except ValidationError as exc:
            return f"not a valid NodeEvent node ({exc.errors(include_url=False)[0]['msg']})"
        if size > self.max_message_bytes:
            return (
                f"node id too long for its NodeEvent ({size} bytes > kafka.max_message_bytes "
                f"{self.max_message_bytes})"
            )
        return None
