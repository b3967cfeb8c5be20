"""The PI TTL controller's maths: the anti-windup clamp, the control law, the TTL bounds, convergence."""

from __future__ import annotations

import itertools
import math

import pytest

from wavegraph.query.ttl_controller import LOG_GAIN, PiGains, TtlController
from wavegraph.settings import PidSettings


def test_gains_come_from_the_pid_block() -> None:
    gains = PiGains.from_settings(PidSettings())
    assert (gains.target, gains.kp, gains.ki, gains.i_max) == (0.45, 0.4, 0.05, 5.0)
    assert (gains.ttl_min_s, gains.ttl_max_s) == (1.0, 86_400.0)


def test_one_step_follows_the_documented_formula() -> None:
    c = TtlController(PiGains(), 60.0)
    step = c.update(hits=25, lookups=100)  # h = 0.25, e = 0.2, Δt = 1 interval
    assert step.hit_ratio == pytest.approx(0.25)
    assert step.error == pytest.approx(0.2)
    assert step.integral == pytest.approx(0.2)
    assert step.u == pytest.approx(0.4 * 0.2 + 0.05 * 0.2)
    assert step.ttl_s == pytest.approx(60.0 * math.exp(LOG_GAIN * step.u))
    assert c.ttl_s == step.ttl_s


def test_too_many_hits_shorten_the_ttl() -> None:
    c = TtlController(PiGains(), 60.0)
    assert c.update(90, 100).ttl_s < 60.0


def test_the_integral_is_clamped_and_the_ttl_stays_in_bounds() -> None:
    gains = PiGains()
    c = TtlController(gains, 60.0)
    for _ in range(500):
        step = c.update(0, 100)  # never a hit: e = 0.45 every interval
        assert -gains.i_max <= step.integral <= gains.i_max
    assert step.integral == gains.i_max
    assert c.ttl_s == pytest.approx(gains.ttl_max_s)
    steps = [c.update(100, 100) for _ in range(500)]
    assert c.ttl_s == pytest.approx(gains.ttl_min_s)
    assert all(-gains.i_max <= s.integral <= gains.i_max for s in steps)
    # once the TTL sits at its bound, more of the same error winds nothing up: the integral holds
    assert len({s.integral for s in steps[-400:]}) == 1


def test_no_windup_at_the_bound_a_reversal_acts_at_once() -> None:
    """After a long saturation at 24 h, too many hits bring the TTL down as soon as the window's hit
    ratio crosses the target (within one window: 4 intervals of 0.25 s), and every interval after."""
    gains = PiGains()
    c = TtlController(gains, 60.0)
    for _ in range(1000):
        c.update(0, 100)
    steps = [c.update(100, 100) for _ in range(8)]
    first = next(i for i, s in enumerate(steps) if s.hit_ratio is not None and s.hit_ratio > gains.target)
    assert first < round(gains.window_s / gains.interval_s)
    ttls = [s.ttl_s for s in steps[first:]]
    assert ttls[0] < 86_400.0 and all(b < a for a, b in itertools.pairwise(ttls))


def test_the_hit_ratio_is_measured_over_a_request_weighted_window() -> None:
    """A burst counts by its requests: 90 hits of 100 then 0 of 10 is a hit ratio near 0.8, not the
    mean of 0.9 and 0; ``window_s = 0`` measures each interval alone."""
    gains = PiGains()
    c = TtlController(gains, 60.0)
    c.update(90, 100)
    keep = math.exp(-gains.interval_s / gains.window_s)
    assert c.update(0, 10).hit_ratio == pytest.approx(keep * 90 / (keep * 100 + 10))
    alone = TtlController(PiGains(window_s=0.0), 60.0)
    alone.update(90, 100)
    assert alone.update(0, 10).hit_ratio == 0.0
    with pytest.raises(ValueError, match="window_s"):
        PiGains(window_s=-1.0)


def test_an_empty_interval_holds_the_state() -> None:
    c = TtlController(PiGains(), 60.0)
    c.update(10, 100)
    before = (c.ttl_s, c.integral)
    step = c.update(0, 0)
    assert step.hit_ratio is None
    assert (c.ttl_s, c.integral) == before


@pytest.mark.parametrize(("hits", "lookups"), [(-1, 10), (11, 10), (0, -1)])
def test_impossible_counts_are_refused(hits: int, lookups: int) -> None:
    with pytest.raises(ValueError):
        TtlController(PiGains(), 60.0).update(hits, lookups)


def test_a_restored_state_keeps_its_ttl() -> None:
    c = TtlController(PiGains(), 123.0, integral=2.0)
    assert c.ttl_s == pytest.approx(123.0)
    assert c.integral == 2.0


@pytest.mark.parametrize("needed_ttl_s", [3.0, 40.0, 2_000.0])
def test_it_converges_on_a_static_plant_without_overshoot_beyond_5pct(needed_ttl_s: float) -> None:
    """A hit ratio linear in ln T (slope 0.13, as measured on the bench traces), one interval of delay."""
    gains = PiGains()
    c = TtlController(gains, 60.0)
    hit = [0.0]
    hits = []
    for _ in range(150):
        h = min(max(gains.target + 0.13 * math.log(c.ttl_s / needed_ttl_s), 0.0), 1.0)
        hits.append(h)
        hit[0] = h
        c.update(round(h * 10_000), 10_000)
    assert c.ttl_s == pytest.approx(needed_ttl_s, rel=0.02)
    start_sign = math.copysign(1.0, gains.target - hits[0])
    overshoot = max(0.0, max(start_sign * (h - gains.target) for h in hits))
    assert overshoot < 0.05


def test_a_cold_cache_holds_the_integral_and_the_proportional_term_still_acts() -> None:
    """Misses with (almost) no stale entry among them: the TTL is not what limits the hit ratio, so
    the integral holds; once stale misses are seen, it integrates again."""
    c = TtlController(PiGains(), 60.0)
    step = c.update(hits=10, lookups=1000, stale=5)  # e = 0.44, 0.5 % of the lookups stale
    assert step.integral == 0.0
    assert step.u == pytest.approx(0.4 * step.error)
    assert step.ttl_s == pytest.approx(60.0 * math.exp(LOG_GAIN * 0.4 * step.error))
    step = c.update(hits=10, lookups=1000, stale=50)  # 5 % stale: a longer TTL would have hit
    assert step.integral == pytest.approx(step.error)
    warm = TtlController(PiGains(), 60.0)
    assert warm.update(10, 1000).integral == pytest.approx(0.44)  # stale unknown: always integrate


def test_too_many_hits_integrate_whatever_the_stale_count() -> None:
    """A TTL that is too long is always the TTL's doing: the hold is for e > 0 only."""
    c = TtlController(PiGains(), 60.0)
    assert c.update(hits=900, lookups=1000, stale=0).integral == pytest.approx(0.45 - 0.9)


def test_more_stale_than_misses_is_refused() -> None:
    with pytest.raises(ValueError, match="stale"):
        TtlController(PiGains(), 60.0).update(90, 100, stale=11)
