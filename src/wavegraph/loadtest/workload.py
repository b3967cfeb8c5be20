"""The edges a scenario offers: deterministic, one distinct edge per sequence number, checkable later.

Event ``i`` of a run is the edge ``n{k} -[LINKS]-> n{k + 1 + j}`` (``k, j = divmod(i, degree)``) of the
run's tenant, with a weight and a time derived from ``i`` and the event id ``{run}-{i}``. Every node has
at most ``degree`` outgoing and ``degree`` incoming edges however long the run, so the cost of a
relationship MERGE stays the same from the first edge to the last (a steady state, as in a large
graph); the node count grows with the run (``i / degree``). No two events share an edge, so
after a scenario every accepted event must be exactly one relationship in Neo4j carrying exactly its
own weight, time and id (the count and content check of :mod:`wavegraph.loadtest.verify`), and a
relationship found there leads back to its event through :meth:`EdgeWorkload.index_of_edge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

BASE_TS = 1_800_000_000.0  # event times start here (2027), one millisecond apart
REL = "LINKS"


@dataclass(frozen=True)
class EdgeWorkload:
    """The edges of one run of one tenant; ``event(i)`` is pure, so any process can rebuild them."""

    tenant: str
    run: str
    degree: int = 8

    def event(self, i: int) -> dict[str, Any]:
        """Edge event ``i`` as the JSON object producers send."""
        rel, weight, ts, event_id = self.props(i)
        k, j = divmod(i, self.degree)
        src, dst = f"n{k}", f"n{k + 1 + j}"
        return {
            "tenant": self.tenant,
            "src": src,
            "dst": dst,
            "rel": rel,
            "weight": weight,
            "ts": ts,
            "event_id": event_id,
        }

    def value(self, i: int) -> bytes:
        """Event ``i`` as a Kafka record value."""
        return orjson.dumps(self.event(i))

    def event_id(self, i: int) -> str:
        return f"{self.run}-{i}"

    def index_of(self, event_id: str) -> int:
        """The sequence number of one of this run's event ids (``ValueError`` for a foreign id)."""
        run, _, seq = event_id.rpartition("-")
        if run != self.run or not seq.isdigit():
            raise ValueError(f"{event_id!r} is not an event of run {self.run!r}")
        return int(seq)

    def props(self, i: int) -> tuple[str, float, float, str]:
        """(type, weight, ts, event_id): what event ``i`` must leave on its relationship in Neo4j."""
        return REL, (i % 1000) / 8, BASE_TS + i / 1000, self.event_id(i)

    def index_of_edge(self, src: str, dst: str) -> int | None:
        """The sequence number whose edge is ``src -> dst`` (None if no event of this shape has it)."""
        if src[:1] != "n" or dst[:1] != "n" or not src[1:].isdigit() or not dst[1:].isdigit():
            return None
        k = int(src[1:])
        j = int(dst[1:]) - k - 1
        return k * self.degree + j if 0 <= j < self.degree else None
