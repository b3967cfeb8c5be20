"""Request parsing, sensitivities, the OpenDP mechanism and its theory (pure: no store)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pytest

from wavegraph.query import dp_stats
from wavegraph.query.dp_stats import InvalidStatQuery

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def plan(statistic: str, **query: str) -> dp_stats.StatPlan:
    return dp_stats.plan(statistic, {"epsilon": "0.5", **query}, degree_bound=8, window_s=30.0, now=NOW)


@pytest.mark.parametrize(
    "raw", ["0", "-1", "nan", "NaN", "inf", "-Infinity", "abc", "", "1e400000", "0.0000000001"]
)
def test_bad_epsilons_are_refused(raw: str) -> None:
    with pytest.raises(InvalidStatQuery) as info:
        dp_stats.parse_epsilon(raw)
    assert info.value.field == "epsilon"


def test_a_missing_epsilon_is_refused() -> None:
    with pytest.raises(InvalidStatQuery, match="required"):
        dp_stats.parse_epsilon(None)


def test_epsilon_is_kept_exact() -> None:
    assert dp_stats.parse_epsilon("0.1") == Decimal("0.1")
    assert dp_stats.parse_epsilon(" 3 ") == Decimal(3)


def test_an_unknown_statistic_or_parameter_is_refused() -> None:
    with pytest.raises(InvalidStatQuery) as info:
        plan("salaries")
    assert info.value.code == "unknown_statistic"
    with pytest.raises(InvalidStatQuery) as info:
        plan("node_count", tenant="globex")  # the tenant never comes from the request
    assert info.value.field == "tenant"


@pytest.mark.parametrize(
    ("statistic", "query", "sensitivity", "n"),
    [
        ("edge_counts", {"types": "KNOWS,LIKES,KNOWS"}, 1, 2),
        ("degree_histogram", {}, 4, 8),
        ("degree_histogram", {"bound": "3"}, 4, 3),
        ("node_count", {}, 2, 1),
        ("transcript_counts", {}, 1, 24),
        ("transcribed_seconds", {"bucket": "day", "start": "2026-11-01T00:00:00Z"}, 30_000, 31),
    ],
)
def test_plans_state_their_sensitivity_and_shape(
    statistic: str, query: dict[str, str], sensitivity: int, n: int
) -> None:
    p = plan(statistic, **query)
    assert (p.sensitivity, len(p.labels)) == (sensitivity, n)
    assert p.query.startswith(statistic)


@pytest.mark.parametrize(
    ("statistic", "query", "field"),
    [
        ("edge_counts", {}, "types"),
        ("edge_counts", {"types": "KNOWS,bad-type"}, "types"),
        ("degree_histogram", {"bound": "0"}, "bound"),
        ("degree_histogram", {"bound": "x"}, "bound"),
        ("transcript_counts", {"bucket": "minute"}, "bucket"),
        ("transcript_counts", {"start": "yesterday"}, "start"),
        ("transcript_counts", {"start": "2026-12-02T00:00:00Z"}, "end"),
        ("transcript_counts", {"start": "2020-01-01T00:00:00Z"}, "start"),  # too many buckets
    ],
)
def test_bad_parameters_name_their_field(statistic: str, query: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidStatQuery) as info:
        plan(statistic, **query)
    assert info.value.field == field


def test_the_mechanism_meets_epsilon_per_opendp() -> None:
    for eps in ("0.1", "0.3", "1", "2.5"):
        meas, scale = dp_stats.mechanism(4, Decimal(eps))
        assert meas.map(4) <= float(eps)
        assert scale == pytest.approx(4 / float(eps), rel=1e-12)


def test_release_noises_every_value_and_keeps_the_shape() -> None:
    p = plan("degree_histogram", bound="5")
    exact = [100, 50, 20, 5, 1]
    draws = [dp_stats.release(p, exact) for _ in range(50)]
    assert all(len(d.values) == 5 and d.mechanism == "discrete_laplace" for d in draws)
    assert any(d.values != tuple(exact) for d in draws)  # ε=0.5, Δ=4: the noise is seldom all zero
    with pytest.raises(ValueError):
        dp_stats.release(p, [1, 2])


def test_render_shapes() -> None:
    assert dp_stats.render(plan("edge_counts", types="A,B"), [3, -1]) == {"A": 3, "B": -1}
    assert dp_stats.render(plan("node_count"), [7]) == {"count": 7}
    seconds: Any = dp_stats.render(plan("transcribed_seconds", start="2026-12-01T10:00:00Z"), [1500, 0])
    assert seconds == [
        {"start": "2026-12-01T10:00:00Z", "seconds": 1.5},
        {"start": "2026-12-01T11:00:00Z", "seconds": 0.0},
    ]


def test_discrete_laplace_theory() -> None:
    scale = 10.0
    a = math.exp(-1 / scale)
    # the variance is the sum over k of k² · P(k), with P(k) = (1-a)/(1+a) · a^|k|
    direct = sum(k * k * (1 - a) / (1 + a) * a ** abs(k) for k in range(-2000, 2001))
    assert dp_stats.discrete_laplace_variance(scale) == pytest.approx(direct, rel=1e-9)
    k = dp_stats.discrete_laplace_abs_quantile(scale, 0.95)
    cdf = lambda m: sum((1 - a) / (1 + a) * a ** abs(j) for j in range(-m, m + 1))  # noqa: E731
    assert cdf(k) >= 0.95 > cdf(k - 1)
