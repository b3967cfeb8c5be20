"""How the graph job turns typed edge events into the one weighted digraph it analyses.

An event names an edge ``(tenant, src, rel, dst)``, as Neo4j stores it. PageRank and the embeddings
see one weighted edge per ordered pair, whose weight is the sum over relationship types:

    w(src → dst) = Σ_rel weight(src, rel, dst)

— what ``networkx.pagerank`` does on a ``MultiDiGraph`` (parallel edges' weights add up). A pair
exists while at least one of its typed edges does (a typed edge of weight 0 keeps a pair of weight 0).

Which event of a typed edge wins is decided by its content alone, as in the Neo4j sink, so the outcome
does not depend on the arrival order: the larger ``ts`` wins; at equal ``ts`` a delete beats an upsert;
at equal ``ts`` and ``op`` the larger ``event_id`` (string comparison) wins; and, where even the ids are
equal (a replay, or a producer reusing an id for another weight), the larger weight wins. Unlike Neo4j,
a delete leaves a tombstone (its ``ts`` and id): edge events are not keyed, so the upsert and the delete
of one edge may sit on different partitions and arrive in either order, and an older upsert arriving
after a newer delete must not bring the edge back. The cost is one small entry per deleted typed edge.
Only the producer's own id is kept per typed edge (``""`` when it gave none: the default id is derived
again from the edge, ``ts`` and ``op`` on a tie, so no hash is computed on the hot path). Pair weights
are summed with ``math.fsum`` (exact, so independent of the order of the types). The result depends
only on the set of events, not on their arrival order; a replayed event changes no pair weight, so a
replay reaches the graph as an empty change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from wavegraph.events import EdgeLike, default_event_id

__all__ = ["EdgeTable", "PairChanges", "wins"]


@dataclass
class PairChanges:
    """The pairs whose weight one batch changed: set ``src[i] → dst[i]`` to ``weight[i]``, and remove
    ``removed_src[i] → removed_dst[i]`` (the two sets are disjoint). ``nodes`` lists the endpoints of
    every upsert, also of those ignored as older than a tombstone: a node exists once an upsert named
    it, whatever the arrival order (as in networkx, deleting edges never removes nodes)."""

    src: list[str] = field(default_factory=list)
    dst: list[str] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)
    removed_src: list[str] = field(default_factory=list)
    removed_dst: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # the endpoints of every upsert, applied or not

    def __len__(self) -> int:
        """The number of pairs changed."""
        return len(self.src) + len(self.removed_src)


Typed = tuple[float | None, float, str]  # (weight, None for a tombstone; ts; the producer's event id or "")


class EdgeTable:
    """The typed edges of one tenant: ``(src, dst) → {rel: (weight, ts, given id)}``; weight ``None`` =
    deleted (a tombstone)."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], dict[str, Typed]] = {}

    def pair_weight(self, src: str, dst: str) -> float | None:
        """The summed weight of ``src → dst``, ``None`` when no (live) typed edge joins them."""
        return _total(self._pairs.get((src, dst)))

    def apply(self, events: Iterable[EdgeLike]) -> PairChanges:
        """Apply the events in order; return the net change of the pair weights."""
        before: dict[tuple[str, str], float | None] = {}
        pairs = self._pairs
        out = PairChanges()
        for ev in events:
            if ev.op == "upsert":
                out.nodes += (ev.src, ev.dst)
            pair = (ev.src, ev.dst)
            rels = pairs.get(pair)
            if pair not in before:
                before[pair] = _total(rels)
            if rels is None:
                rels = pairs[pair] = {}
            stored = rels.get(ev.rel)
            if stored is not None and not wins(ev, stored):
                continue  # older than (or a replay of) what the edge has seen: ignored
            rels[ev.rel] = (ev.weight if ev.op == "upsert" else None, ev.ts, ev.given_id)
        for (src, dst), old in before.items():
            new = _total(pairs.get((src, dst)))
            if new is None and old is not None:
                out.removed_src.append(src)
                out.removed_dst.append(dst)
            elif new is not None and new != old:
                out.src.append(src)
                out.dst.append(dst)
                out.weight.append(new)
        return out


def wins(ev: EdgeLike, stored: Typed) -> bool:
    """Whether ``ev`` replaces ``stored``, the event its typed edge holds (see the module docstring)."""
    weight, ts, given = stored
    if ev.ts != ts:
        return ev.ts > ts
    deletes = ev.op == "delete"
    if deletes != (weight is None):
        return deletes
    new_id = ev.event_id
    old_id = given or default_event_id(ev)  # the stored event has ev's edge, ts and op: its default id
    if new_id != old_id:
        return new_id > old_id
    return weight is not None and ev.weight > weight


def _total(rels: dict[str, Typed] | None) -> float | None:
    if not rels:
        return None
    live = [w for w, _, _ in rels.values() if w is not None]
    return math.fsum(live) if live else None
