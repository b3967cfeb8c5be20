"""Which tenants a graph-job instance holds, by partition of the tenant-keyed edge topic, and how far.

The graph job consumes ``wavegraph.edges.by-tenant.v1``, keyed by tenant, so every edge of a tenant is
on one partition and an instance that owns a partition holds whole tenant graphs. For each partition
it held or holds, :class:`PartitionTenants` knows the tenants seen on it and ``covered``: the offset
after the last record applied to their state. The state of a partition's tenants is then exactly the
log prefix ``[0, covered)`` of that partition (the records are applied in log order and replays
change nothing).

A rebalance (Kafka's eager protocol) first revokes every partition — they are *parked*: kept, not
published — and then assigns the new set. :meth:`PartitionTenants.settle` compares each assigned
partition with the group's committed offset ``c`` (what the previous owner's state covered):

- parked here and ``c <= covered``: nobody went further — **kept** as is (the redelivered records
  ``[c, covered)`` change nothing);
- parked here and ``c > covered``: another instance went on — the state is **extended** by reading
  ``[covered, c)`` (no recompute from scratch);
- not held here: its tenants are **loaded** by reading ``[beginning, c)``;
- no commit: nothing to read (the group starts the partition at its earliest offset);

and parked partitions not assigned again are **dropped** (their tenants now live elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["PartitionTenants", "Plan"]

BEGINNING = -1  # read from the partition's first retained offset


@dataclass
class _Held:
    tenants: set[str] = field(default_factory=set)
    covered: int = 0


@dataclass(frozen=True)
class Plan:
    """What a new assignment asks for: tenants to forget, ranges to read (``start`` may be
    :data:`BEGINNING`; ``end`` excluded) and the partitions kept without reading."""

    drop: frozenset[str]
    read: dict[int, tuple[int, int]]
    kept: frozenset[int]


class PartitionTenants:
    """Tenants and covered offsets per partition (see the module docstring)."""

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}
        self._parked: dict[int, _Held] = {}

    def note(self, partition: int, tenant: str, offset: int) -> None:
        """Record that the record at ``offset`` of ``partition``, of ``tenant``, is in the state."""
        held = self._held.setdefault(partition, _Held())
        held.tenants.add(tenant)
        held.covered = max(held.covered, offset + 1)

    def cover(self, partition: int, offset: int) -> None:
        """The state covers ``partition`` up to ``offset`` (after a read that ended there)."""
        held = self._held.setdefault(partition, _Held())
        held.covered = max(held.covered, offset)

    def tenants(self, partitions: Iterable[int] | None = None) -> set[str]:
        """The tenants of the held ``partitions`` (all held partitions: None)."""
        chosen = (
            self._held if partitions is None else {p: self._held[p] for p in partitions if p in self._held}
        )
        return set().union(*(h.tenants for h in chosen.values())) if chosen else set()

    def parked_tenants(self) -> set[str]:
        return set().union(*(h.tenants for h in self._parked.values())) if self._parked else set()

    def covered(self, partition: int) -> int:
        held = self._held.get(partition) or self._parked.get(partition)
        return held.covered if held else 0

    def park(self, partitions: Iterable[int]) -> None:
        """The partitions were revoked: keep their state aside until the next assignment."""
        for p in partitions:
            held = self._held.pop(p, None)
            if held is not None:
                self._parked[p] = held

    def settle(self, assigned: Iterable[int], committed: dict[int, int]) -> Plan:
        """Decide what the new assignment needs (see the module docstring) and hold the assigned
        partitions again; ``committed`` maps a partition to the group's committed offset (absent: none)."""
        assigned = set(assigned)
        drop: set[str] = set()
        read: dict[int, tuple[int, int]] = {}
        kept: set[int] = set()
        for shelf in (self._parked, self._held):
            for p, gone in list(shelf.items()):
                if p not in assigned:
                    drop |= gone.tenants
                    del shelf[p]
        for p in sorted(assigned):
            held: _Held | None = self._parked.pop(p, None) or self._held.get(p)
            end = committed.get(p, 0)
            if held is not None and (end <= held.covered):
                self._held[p] = held
                kept.add(p)
            elif held is not None:
                self._held[p] = held
                read[p] = (held.covered, end)
            elif end > 0:
                read[p] = (BEGINNING, end)
        return Plan(frozenset(drop), read, frozenset(kept))
