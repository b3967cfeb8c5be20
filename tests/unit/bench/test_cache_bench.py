"""The TTL controllers compared on the bench's own synthetic trace, replayed in memory (no Redis: the
same figures as the bench's replay on a real Redis, in seconds; that replay runs in
tests/integration/http/test_cache.py and ``wavegraph bench cache``)."""

from __future__ import annotations

import pytest

from wavegraph.bench.cache import (
    DTTL_STEP,
    DttlPolicy,
    FixedPolicy,
    PiPolicy,
    evaluate,
    fixed_ttl_for,
    replay_in_memory,
    synthetic_trace,
)
from wavegraph.query.ttl_controller import PiGains
from wavegraph.settings import PidSettings


@pytest.fixture(scope="module")
def figures() -> dict[str, dict[str, float]]:
    trace = synthetic_trace(seed=1, regime_s=200.0, rate=100.0)  # the --quick trace, another seed
    gains = PiGains.from_settings(PidSettings())
    policies = {
        "pi": (PiPolicy(gains, 60.0), gains.interval_s),
        "dttl": (DttlPolicy(gains.target, 60.0, DTTL_STEP, gains.ttl_min_s, gains.ttl_max_s), 1.0),
        "fixed": (FixedPolicy(fixed_ttl_for(trace, gains.target)), 1.0),
    }
    return {
        name: evaluate(replay_in_memory(policy, trace, interval_s=iv), trace, gains.target, iv)
        for name, (policy, iv) in policies.items()
    }


def test_the_pi_loop_meets_its_goals_and_is_no_worse_than_dttl(figures: dict[str, dict[str, float]]) -> None:
    pi, dttl = figures["pi"], figures["dttl"]
    assert pi["settled_error"] <= 0.02 and pi["overshoot"] < 0.05
    assert pi["settled_error"] <= dttl["settled_error"]
    assert pi["overshoot"] <= dttl["overshoot"]


def test_a_fixed_ttl_misses_the_later_regimes(figures: dict[str, dict[str, float]]) -> None:
    """The baseline is tuned on regime 1 only: the other regimes leave it far off the target."""
    assert figures["fixed"]["settled_error"] > 3 * figures["pi"]["settled_error"]
