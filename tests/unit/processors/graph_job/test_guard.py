"""GraphGuard: weights PageRank cannot rank and node ids whose NodeEvent cannot be sent are refused."""

from __future__ import annotations

import math
import random

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from wavegraph.events import EdgeEvent, NodeEvent, encode
from wavegraph.processors.graph_job.guard import (
    MAX_WEIGHT,
    MIN_WEIGHT,
    WORST_PAGERANK,
    WORST_VERSION,
    GraphGuard,
    node_record_bytes,
)
from wavegraph.processors.graph_job.tenant import TenantGraph

DEFAULT_LIMIT = 16 * 1024 * 1024


def ev(src: str = "a", dst: str = "b", *, weight: float = 1.0, op: str = "upsert") -> EdgeEvent:
    return EdgeEvent.model_validate(
        {"tenant": "acme", "src": src, "dst": dst, "weight": weight, "ts": 1.0, "op": op}
    )


@pytest.mark.parametrize(
    "weight", [5e-324, 1e-300, MIN_WEIGHT / 2, MAX_WEIGHT * 2, 1e308, 1.7976931348623157e308]
)
def test_weights_outside_the_range_are_refused_with_the_field(weight: float) -> None:
    reason = GraphGuard(DEFAULT_LIMIT).refusal(ev(weight=weight))
    assert reason is not None and reason.startswith("weight: ")


@pytest.mark.parametrize("weight", [0.0, MIN_WEIGHT, 1e-12, 1.0, 1e200, MAX_WEIGHT])
def test_weights_inside_the_range_and_zero_are_accepted(weight: float) -> None:
    assert GraphGuard(DEFAULT_LIMIT).refusal(ev(weight=weight)) is None


def test_a_delete_is_never_refused() -> None:
    assert GraphGuard(1024).refusal(ev("😀" * 256, weight=5e-324, op="delete")) is None


def test_the_extreme_admitted_weights_give_finite_pagerank() -> None:
    """The range's reason: at both ends, on one source and summed over types, the scores stay finite."""
    g = TenantGraph("acme", damping=0.85, tol=1e-10)
    ring = [ev(f"n{i}", f"n{(i + 1) % 5}") for i in range(5)]
    extremes = [ev("tiny", "n0", weight=MIN_WEIGHT), ev("huge", "n1", weight=MAX_WEIGHT)]
    many = [
        EdgeEvent.model_validate(
            {"tenant": "acme", "src": "huge", "dst": "n2", "rel": f"R{k}", "weight": MAX_WEIGHT, "ts": 1.0}
        )
        for k in range(64)
    ]
    for batch in (ring, extremes, many):
        change = g.apply(batch)
        assert change is not None
        g.update_pagerank(change)
    scores = g.scores()
    assert all(math.isfinite(x) for x in scores) and abs(float(scores.sum()) - 1.0) < 1e-9
    assert g.pagerank_resets == 0


def test_the_worst_score_is_the_longest_json_float() -> None:
    rng = random.Random(0)
    longest = len(encode(NodeEvent(tenant="acme", node="x", pagerank=WORST_PAGERANK, embedding_version=1)))
    for exponent in range(-330, 1):
        x = rng.random() * 10.0**exponent
        event = NodeEvent(tenant="acme", node="x", pagerank=x, embedding_version=1)
        assert len(encode(event)) <= longest


def test_a_node_id_whose_event_does_not_fit_is_refused_on_either_end() -> None:
    long_id = "😀" * 256  # 1 KiB in UTF-8, in the key and the value
    size = node_record_bytes("acme", long_id)
    guard = GraphGuard(size - 1)
    src = guard.refusal(ev(long_id, "b"))
    dst = guard.refusal(ev("a", long_id))
    assert src is not None and src.startswith("src: ") and f"{size} bytes" in src
    assert dst is not None and dst.startswith("dst: ")
    assert guard.refusal(ev("a", "b")) is None
    assert GraphGuard(size).refusal(ev(long_id, "b")) is None


@pytest.mark.parametrize("node", ["x", "é" * 256, "\x01" * 256, "😀" * 256, '"\\' * 128])
def test_the_size_is_what_the_producer_checks(node: str) -> None:
    event = NodeEvent(tenant="acme", node=node, pagerank=WORST_PAGERANK, embedding_version=WORST_VERSION)
    key = f"acme/{node}".encode()
    expected = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, encode(event), [])
    assert node_record_bytes("acme", node) == expected
    # the length-only bound used on the fast path never underestimates
    assert GraphGuard(expected - 1).refusal(ev(node, "b")) is not None
