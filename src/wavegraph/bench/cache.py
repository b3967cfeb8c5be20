"""``wavegraph bench cache``: the PI-controlled TTL vs a fixed TTL vs d-TTL, replayed on the real Redis.

**Trace.** ``--trace FILE`` (one request per line: ``<seconds since start> <key>``; regime changes are
unknown, so the whole file is one regime) or a seeded synthetic one: regimes of equal length, each a
Zipf law over its own catalogue (size, exponent, a fresh popularity permutation, new keys) and its own
mean rate, the rate itself bursty (on/off in exponential segments of mean 1 s: ×1.8 for 30 % of the
time, ×0.66 otherwise). A fixed TTL that gives the target on regime 1 gives 0.30-0.58 on the others.

**Replay.** Every request goes through :class:`wavegraph.http.cache.ResponseCache` on the real Redis
(``GET``, and ``SET PX`` on a miss; a 256-byte body): freshness is judged on the trace's clock (an
entry's age is trace time), and the replay is **time-scaled**: request ``t`` is sent at wall time
``t / scale`` (``scale`` chosen for :data:`WALL_RATE` requests/s), Redis ``PX`` is the TTL divided by
``scale`` (× :data:`EXPIRY_HEADROOM`, so a replay running late does not lose fresh keys), and the
controllers' intervals are in trace seconds (``pid.interval_s``, 0.25 s by default), so their
dynamics are those of real time. The three controllers replay the same trace one after another on
their own key prefixes.

**Controllers.** ``pi``: :class:`~wavegraph.query.ttl_controller.TtlController` with the ``pid:`` block.
``fixed``: the TTL whose hit ratio on regime 1 is the target (bisection on an in-memory TTL-cache
simulation of that regime). ``dttl``: the d-TTL idea of Basu et al. (2017, "Adaptive TTL-Based Caching
for Content Delivery"): a stochastic-approximation update of one TTL on every request,
``θ ← clip(θ + η (h* − 1{hit}))``, constant step (the tracking form, for non-stationary traffic),
here in log space ``ln θ ← ln θ + η (h* − 1{hit})`` so the step is relative, ``η =`` :data:`DTTL_STEP`.

**Figures** (per interval hit ratios, smoothed over :data:`SMOOTH_S` = 20 s of trace time, whatever the
interval):
``settling_s`` = mean over regimes of the time from the regime's start until the hit ratio stays within
±5 % of the target for the rest of the regime (the regime length if never); ``settled_error`` = mean
``|h − h*|`` over the settled parts (the second half of a regime that never settles);
``overshoot`` = the largest excursion past the target (opposite to the error at the regime's start)
over the regimes after a change (``cold_start_overshoot``: the same for the first regime, which starts
from an empty cache); ``mean_ttl_s``; ``used_memory_bytes`` = mean Redis ``used_memory`` minus its value
before the replay (the Redis is shared, so this is noisy). ``ratio`` = fixed settled error ÷ PI's.

Measured here (2 cores, Redis 7.0, full trace: 4 regimes × 400 s, 316 k requests, scale 25, ~63 s a
controller; ``pid.interval_s`` = 0.25 s, ``pid.window_s`` = 1 s): settled error PI 0.44 %, fixed
10.0 %, d-TTL 0.59 %; overshoot after the regime changes PI 2.8 %, d-TTL 9.1 %; cold-start overshoot
PI 2.3 %, d-TTL 10.1 %; settling PI 27 s, d-TTL 49 s; mean TTL PI 59 s, fixed 25 s, d-TTL 2,567 s;
used memory PI 7.2 MB, fixed 4.7 MB, d-TTL 8.0 MB. ``--quick`` (4 × 200 s, 79 k requests): settled
error PI 0.51 %, d-TTL 0.84 %; overshoot PI 2.7 %, d-TTL 9.6 %; settling PI 40 s, d-TTL 85 s.
(Before: 1 s intervals each measured alone, κ = 8: settled 1.15 %, overshoot 3.6 %, settling 53 s.)
:func:`replay_in_memory` gives the same figures without Redis (seed 0: identical to two decimals).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rich.console import Console

from wavegraph.clients import redis_client
from wavegraph.http.cache import ResponseCache
from wavegraph.query.ttl_controller import PiGains, TtlController
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings

__all__ = [
    "Trace",
    "evaluate",
    "fixed_ttl_for",
    "load_trace",
    "replay",
    "replay_in_memory",
    "run_cache_bench",
    "simulate_hit_ratio",
    "synthetic_trace",
]

WALL_RATE = 5000.0  # requests per wall second the replay is paced for (measured capacity: ~8000)
EXPIRY_HEADROOM = 3.0
SMOOTH_S = 20.0  # the figures' smoothing window, in trace seconds
BAND = 0.05
DTTL_STEP = 0.01
BODY = b"x" * 256
CHUNK = 128
# (catalogue size, Zipf exponent, rate multiplier) per regime
REGIMES: tuple[tuple[int, float, float], ...] = (
    (20_000, 0.8, 1.0),
    (50_000, 0.7, 1.5),
    (5_000, 1.0, 0.5),
    (20_000, 0.9, 1.0),
)


@dataclass(frozen=True)
class Trace:
    times: np.ndarray  # seconds since start, non-decreasing
    keys: list[str]
    regime_starts: list[float] = field(default_factory=lambda: [0.0])

    @property
    def duration_s(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0


def synthetic_trace(
    seed: int = 0,
    regime_s: float = 400.0,
    rate: float = 200.0,
    regimes: Sequence[tuple[int, float, float]] = REGIMES,
) -> Trace:
    """The seeded bursty, non-stationary Zipf trace described in the module docstring."""
    rng = np.random.default_rng(seed)
    times, keys, starts = [], [], []
    for r, (n, alpha, mult) in enumerate(regimes):
        p = 1.0 / np.arange(1, n + 1) ** alpha
        p /= p.sum()
        perm = rng.permutation(n)
        t0 = r * regime_s
        starts.append(t0)
        t = t0
        while t < t0 + regime_s:
            seg = min(rng.exponential(1.0), t0 + regime_s - t)
            lam = rate * mult * (1.8 if rng.random() < 0.3 else 0.66)
            m = rng.poisson(lam * seg)
            times.append(np.sort(rng.uniform(t, t + seg, m)))
            keys.append(perm[rng.choice(n, m, p=p)] + r * 10_000_000)
            t += seg
    all_keys = np.concatenate(keys)
    return Trace(np.concatenate(times), [f"r{k}" for k in all_keys.tolist()], starts)


def load_trace(path: Path) -> Trace:
    """A ``<seconds since start> <key>`` file (blank lines and ``#`` comments skipped), sorted by time."""
    pairs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        t, _, key = line.partition(" ")
        pairs.append((float(t), key.strip()))
    if not pairs:
        raise ValueError(f"{path}: no requests")
    pairs.sort(key=lambda p: p[0])
    return Trace(np.array([p[0] for p in pairs]), [p[1] for p in pairs], [0.0])


def simulate_hit_ratio(times: np.ndarray, keys: Sequence[str], ttl_s: float) -> float:
    """Hit ratio of an in-memory TTL cache (insert on miss, fixed TTL) over a trace."""
    inserted: dict[str, float] = {}
    hits = 0
    for t, k in zip(times.tolist(), keys, strict=True):
        at = inserted.get(k)
        if at is not None and t - at <= ttl_s:
            hits += 1
        else:
            inserted[k] = t
    return hits / max(len(keys), 1)


def fixed_ttl_for(trace: Trace, target: float, lo: float = 0.01, hi: float = 86_400.0) -> float:
    """The TTL giving ``target`` on the first regime (bisection in log space)."""
    end = trace.regime_starts[1] if len(trace.regime_starts) > 1 else math.inf
    n = int(np.searchsorted(trace.times, end))
    times, keys = trace.times[:n], trace.keys[:n]
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        if simulate_hit_ratio(times, keys, mid) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


class Policy(Protocol):
    ttl_s: float

    def observe(self, hit: bool, stale: bool = False) -> None: ...
    def tick(self, dt_s: float) -> None: ...


class PiPolicy:
    def __init__(self, gains: PiGains, ttl_s: float) -> None:
        self.controller = TtlController(gains, ttl_s)
        self.ttl_s = self.controller.ttl_s
        self._hits = self._lookups = self._stale = 0

    def observe(self, hit: bool, stale: bool = False) -> None:
        self._hits += hit
        self._lookups += 1
        self._stale += stale

    def tick(self, dt_s: float) -> None:
        step = self.controller.update(self._hits, self._lookups, dt_s, stale=self._stale)
        self.ttl_s = step.ttl_s
        self._hits = self._lookups = self._stale = 0


class FixedPolicy:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s

    def observe(self, hit: bool, stale: bool = False) -> None:
        pass

    def tick(self, dt_s: float) -> None:
        pass


class DttlPolicy:
    """d-TTL (see the module docstring): one TTL, moved on every request."""

    def __init__(self, target: float, ttl_s: float, step: float, lo: float, hi: float) -> None:
        self.target, self.step = target, step
        self._lo, self._hi = math.log(lo), math.log(hi)
        self._x = math.log(ttl_s)
        self.ttl_s = ttl_s

    def observe(self, hit: bool, stale: bool = False) -> None:
        self._x = min(max(self._x + self.step * (self.target - hit), self._lo), self._hi)
        self.ttl_s = math.exp(self._x)

    def tick(self, dt_s: float) -> None:
        pass


@dataclass
class Replay:
    hits: list[int] = field(default_factory=list)
    lookups: list[int] = field(default_factory=list)
    ttl_s: list[float] = field(default_factory=list)
    memory_bytes: list[int] = field(default_factory=list)
    late_s: float = 0.0
    wall_s: float = 0.0


async def replay(
    cache: ResponseCache,
    policy: Policy,
    trace: Trace,
    *,
    scale: float,
    interval_s: float,
    memory_every: int = 4,
    chunk: int = CHUNK,
) -> Replay:
    """Send every request of ``trace`` through ``cache`` (paced at ``1/scale`` of trace time) and
    close an interval of ``interval_s`` trace seconds at each boundary (``policy.tick``).

    Requests go in chunks of at most ``chunk`` consecutive ones within one interval: one ``MGET`` of
    the chunk's keys, the hits decided in order on the trace's clock (a key repeated inside the chunk
    sees the entry its first miss stored; an entry found but older than the TTL is a *stale* miss, told
    to the policy), then one pipeline of ``SET PX`` for the misses."""
    out = Replay()
    now = [0.0]
    cache.clock = lambda: now[0]
    cache.ttl_s = policy.ttl_s
    base_memory = await _used_memory(cache)
    times = trace.times.tolist()
    hits = lookups = 0
    boundary = interval_s
    start = time.monotonic()
    i = 0
    while i < len(times):
        while times[i] >= boundary:
            policy.tick(interval_s)
            cache.ttl_s = policy.ttl_s
            out.hits.append(hits)
            out.lookups.append(lookups)
            out.ttl_s.append(policy.ttl_s)
            if len(out.hits) % memory_every == 0:
                out.memory_bytes.append(await _used_memory(cache) - base_memory)
            hits = lookups = 0
            boundary += interval_s
        j = min(i + chunk, int(np.searchsorted(trace.times, boundary, side="left")), len(times))
        j = max(j, i + 1)
        ahead = times[i] / scale - (time.monotonic() - start)
        if ahead > 0:
            await asyncio.sleep(ahead)
        else:
            out.late_s = max(out.late_s, -ahead)
        now[0] = times[i]
        keys = [cache.key("bench", "trace", k.encode()) for k in trace.keys[i:j]]
        unique = list(dict.fromkeys(keys))
        created = {
            k: e.created for k, e in zip(unique, await cache.peek_many(unique), strict=True) if e is not None
        }
        stores: dict[str, tuple[str, float, float, bytes]] = {}
        for t, key in zip(times[i:j], keys, strict=True):
            at = created.get(key)
            hit = at is not None and t - at <= policy.ttl_s
            policy.observe(hit, stale=at is not None and not hit)
            hits += hit
            lookups += 1
            if not hit:
                created[key] = t
                stores[key] = (key, t, policy.ttl_s, BODY)
        cache.ttl_s = policy.ttl_s
        await cache.store_many(list(stores.values()))
        i = j
    out.wall_s = time.monotonic() - start
    return out


def replay_in_memory(
    policy: Policy, trace: Trace, *, interval_s: float, expiry_headroom: float = EXPIRY_HEADROOM
) -> Replay:
    """The replay's twin without Redis or pacing: a dict of (created, expires) per key, the same hit,
    stale and interval rules, one request at a time. For tuning a controller in seconds; the bench's
    figures come from :func:`replay` (a real Redis)."""
    out = Replay()
    entries: dict[str, tuple[float, float]] = {}
    hits = lookups = 0
    boundary = interval_s
    for t, key in zip(trace.times.tolist(), trace.keys, strict=True):
        while t >= boundary:
            policy.tick(interval_s)
            out.hits.append(hits)
            out.lookups.append(lookups)
            out.ttl_s.append(policy.ttl_s)
            hits = lookups = 0
            boundary += interval_s
        entry = entries.get(key)
        if entry is not None and t > entry[1]:
            entry = None
        hit = entry is not None and t - entry[0] <= policy.ttl_s
        policy.observe(hit, stale=entry is not None and not hit)
        hits += hit
        lookups += 1
        if not hit:
            entries[key] = (t, t + policy.ttl_s * expiry_headroom)
    return out


async def _used_memory(cache: ResponseCache) -> int:
    info = await cache.redis.info("memory")
    return int(info["used_memory"])


def evaluate(
    run: Replay, trace: Trace, target: float, interval_s: float, smooth_s: float = SMOOTH_S
) -> dict[str, float]:
    """``settled_error``, ``overshoot``, ``settling_s``, ``mean_ttl_s`` (see the module docstring)."""
    hits = np.asarray(run.hits, dtype=float)
    lookups = np.asarray(run.lookups, dtype=float)
    smooth = max(1, round(smooth_s / interval_s))
    kernel = np.ones(smooth)
    h_all = np.convolve(hits, kernel)[: len(hits)] / np.maximum(np.convolve(lookups, kernel)[: len(hits)], 1)
    ends = [*trace.regime_starts[1:], len(hits) * interval_s]
    settled: list[float] = []
    overshoots, settling = [], []
    for start, end in zip(trace.regime_starts, ends, strict=True):
        # the first smoothed value lying wholly inside the regime
        first = round(start / interval_s) + smooth - 1
        last = round(end / interval_s)
        err = h_all[first:last] - target
        if len(err) == 0:
            continue
        sign = math.copysign(1.0, err[0]) if err[0] != 0 else 1.0
        overshoots.append(float(max(0.0, (-sign * err).max())))
        outside = np.nonzero(np.abs(err) > BAND)[0]
        k = 0 if len(outside) == 0 else int(outside[-1]) + 1
        if k < len(err):
            settling.append((k + smooth - 1) * interval_s)
            settled.extend(np.abs(err[k:]).tolist())
        else:
            settling.append(end - start)
            settled.extend(np.abs(err[len(err) // 2 :]).tolist())
    return {
        "settled_error": float(np.mean(settled)) if settled else math.nan,
        "overshoot": max(overshoots[1:], default=0.0),
        "cold_start_overshoot": overshoots[0] if overshoots else math.nan,
        "settling_s": float(np.mean(settling)) if settling else math.nan,
        "mean_ttl_s": float(np.mean(run.ttl_s)) if run.ttl_s else math.nan,
    }


async def _run(settings: Settings, trace: Trace, quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    gains = PiGains.from_settings(settings.pid)
    fixed = fixed_ttl_for(trace, gains.target)
    rate = len(trace.times) / max(trace.duration_s, 1e-9)
    scale = max(1.0, WALL_RATE / rate)
    policies: dict[str, Policy] = {
        "pi": PiPolicy(gains, settings.cache.ttl_initial_s),
        "fixed": FixedPolicy(fixed),
        "dttl": DttlPolicy(
            gains.target, settings.cache.ttl_initial_s, DTTL_STEP, gains.ttl_min_s, gains.ttl_max_s
        ),
    }
    client = redis_client(settings.redis, timeout_s=5.0)
    rows = []
    try:
        for name, policy in policies.items():
            prefix = f"{settings.cache.key_prefix}bench:{uuid.uuid4().hex[:8]}:"
            cache = ResponseCache(client, prefix=prefix, time_scale=scale, expiry_headroom=EXPIRY_HEADROOM)
            run = await replay(cache, policy, trace, scale=scale, interval_s=gains.interval_s)
            row: dict[str, Any] = {"controller": name, **evaluate(run, trace, gains.target, gains.interval_s)}
            row["used_memory_bytes"] = int(np.mean(run.memory_bytes)) if run.memory_bytes else 0
            row["hit_ratio"] = sum(run.hits) / max(sum(run.lookups), 1)
            row["wall_s"] = round(run.wall_s, 2)
            row["late_max_s"] = round(run.late_s, 3)
            rows.append(row)
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                await client.unlink(key)
    finally:
        await client.aclose()
    params = {
        "quick": quick,
        "requests": len(trace.times),
        "trace_s": round(trace.duration_s, 1),
        "regimes": len(trace.regime_starts),
        "time_scale": round(scale, 2),
        "target_hit_ratio": gains.target,
        "interval_s": gains.interval_s,
        "fixed_ttl_s": round(fixed, 3),
        "dttl_step": DTTL_STEP,
        "smooth_s": SMOOTH_S,
    }
    return rows, params


def run_cache_bench(
    settings: Settings,
    trace: Path | None = None,
    quick: bool = False,
    out: Path | None = None,
    *,
    seed: int = 0,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the bench (see the module docstring), write ``out`` (default ``bench/results/cache.json``),
    print the table and return the report."""
    requests = (
        load_trace(trace)
        if trace
        else synthetic_trace(seed, regime_s=200.0 if quick else 400.0, rate=100.0 if quick else 200.0)
    )
    rows, params = asyncio.run(_run(settings, requests, quick))
    by = {r["controller"]: r for r in rows}
    ratio = by["fixed"]["settled_error"] / max(by["pi"]["settled_error"], 1e-9)
    report = build_report("cache", params, rows, ratio)
    write_report(report, out, console)
    return report
