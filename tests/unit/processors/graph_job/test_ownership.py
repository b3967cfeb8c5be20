"""Which ranges a new assignment reads (``processors/graph_job/ownership.py``)."""

from __future__ import annotations

from wavegraph.processors.graph_job.ownership import BEGINNING, PartitionTenants


def held(*records: tuple[int, str, int]) -> PartitionTenants:
    owned = PartitionTenants()
    for partition, tenant, offset in records:
        owned.note(partition, tenant, offset)
    return owned


def test_first_assignment_reads_every_committed_partition_from_the_beginning() -> None:
    plan = PartitionTenants().settle([0, 1, 2], {0: 40, 2: 7})
    assert plan.read == {0: (BEGINNING, 40), 2: (BEGINNING, 7)}  # 1 has no commit: the group starts it
    assert plan.kept == frozenset() and plan.drop == frozenset()


def test_a_rebalance_keeps_current_partitions_extends_advanced_ones_and_drops_the_rest() -> None:
    owned = held((0, "a", 9), (1, "b", 4), (1, "c", 5), (2, "d", 2))
    owned.park([0, 1, 2])
    assert owned.tenants() == set() and owned.parked_tenants() == {"a", "b", "c", "d"}
    # 0: committed where this state ends; 1: another owner went on to 20; 2: moved away; 3: new here
    plan = owned.settle([0, 1, 3], {0: 10, 1: 20, 2: 3, 3: 8})
    assert plan.kept == {0}
    assert plan.read == {1: (6, 20), 3: (BEGINNING, 8)}  # 1 continues after what it covers
    assert plan.drop == {"d"}
    assert owned.tenants() == {"a", "b", "c"} and owned.parked_tenants() == set()


def test_a_commit_behind_the_state_keeps_it() -> None:
    """The last commit before a revocation failed: the state covers more than the commit, and the
    redelivered records change nothing."""
    owned = held((0, "a", 30))
    owned.park([0])
    assert owned.settle([0], {0: 12}).kept == {0}


def test_cover_moves_the_end_of_a_read_partition() -> None:
    owned = PartitionTenants()
    plan = owned.settle([0], {0: 50})
    assert plan.read == {0: (BEGINNING, 50)}
    owned.note(0, "a", 48)
    owned.cover(0, 50)  # the last records were invalid: the read still ended at the commit
    assert owned.covered(0) == 50
    owned.park([0])
    assert owned.settle([0], {0: 50}).kept == {0}
