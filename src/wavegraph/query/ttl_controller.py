"""The TTL controller: a discrete PI loop that steers a cache's hit ratio toward a target (pure maths).

Every interval ``k`` (``pid.interval_s`` seconds long; ``Δt`` = its measured length **in intervals**,
1 for a punctual loop, so the gains do not depend on the interval chosen) the caller reports the hits
:math:`a_k`, lookups :math:`n_k` and stale misses :math:`s_k` it saw. The hit ratio is measured over a
sliding window of time constant :math:`W` (``pid.window_s``): the counts decay by
:math:`\\lambda_k = e^{-\\Delta t \\, \\tau / W}` (:math:`\\tau` = ``interval_s``) each interval,

.. math::

    A_k = \\lambda_k A_{k-1} + a_k \\qquad N_k = \\lambda_k N_{k-1} + n_k \\qquad h_k = A_k / N_k

(a request-weighted mean: a burst counts by its requests, as the hit ratio itself does) and the
controller computes

.. math::

    e_k = h^* - h_k \\qquad
    I_k = \\min(\\max(I_{k-1} + e_k \\Delta t, -I_{max}), I_{max}) \\qquad
    u_k = K_p e_k + K_i I_k

and moves the TTL **in log space, positionally, around a base** :math:`b_k`:

.. math::

    \\ln T_k = \\mathrm{clip}(b_k + \\kappa u_k,\\; \\ln T_{min}, \\ln T_{max}) \\qquad
    b_k = \\mathrm{clip}(b_{k-1} + \\kappa K_i (\\tilde I_k - I_k),\\; \\ln T_{min}, \\ln T_{max})

with :math:`b_0 = \\ln T_0` (``cache.ttl_initial_s``), :math:`\\tilde I_k = I_{k-1} + e_k \\Delta t` the
unclamped integral and :math:`\\kappa` = :data:`LOG_GAIN` = 16. Why this shape:

- *log space*: the hit ratio of a TTL cache under Zipf-like traffic is close to linear in ``ln T``
  (measured on the bench's traces: ``dh/d ln T ≈ 0.13`` near ``h = 0.45``), so equal errors ask for
  equal *ratios* of TTL, from 1 s to 24 h;
- *positional* (``T`` is a function of ``u``, not ``T_k = T_{k-1}·e^{u_k}``): with a static plant an
  incremental form makes ``Ki·I`` a second integrator whose state must return to zero, which forces an
  overshoot of the same area as the initial error (simulated: 13-20 % after regime changes, vs < 4 %);
- *the base*: ``Ki·I_max = 0.25`` alone could move ``ln T`` by only ``±κ·0.25``; the part of the
  integral cut off by the anti-windup clamp is carried into ``b`` instead of being lost, so a regime
  needing a 100× larger TTL is still reached, while ``I`` itself never exceeds ``I_max`` (so the stored
  integral that drives overshoot stays bounded) and ``b`` stops at the TTL bounds;
- *no windup at the TTL bounds*: while the TTL sits at 1 s or 24 h and the step would push it further,
  ``I`` and ``b`` hold, so a reversal acts as soon as the measured error changes sign;
- *κ = 16*: the largest gain for which a plant that answers a TTL change at once (hit ratio linear in
  ``ln T``, slope 0.13, one interval of delay) converges without overshoot; at κ = 20 it overshoots
  7 %, at 24 14-18 %.

**Conditional integration (anti-windup against a cold cache).** A miss is either *stale* (the entry
is there, older than the TTL: a longer TTL would have made it a hit) or *absent* (never stored, or
gone). After a change of catalogue the cache refills: nearly every miss is absent, and no TTL can
raise the hit ratio faster than the keys come back (with a TTL longer than the cache's age, the hit
ratio does not depend on the TTL at all). Integrating that error only winds the integral up, and the
TTL it reaches overshoots once the cache is warm. So when the caller reports ``stale`` and
``e_k > 0`` while fewer than :data:`STALE_FLOOR` (1 %) of the window's lookups were stale
(:math:`S_k < 0.01 N_k`, ``S`` decayed like ``A``), the integral and the base hold
(``I_k = I_{k-1}``); the proportional term still acts. Entries must outlive their TTL for stale
lookups to be seen: :class:`wavegraph.http.cache.ResponseCache` keeps them ``cache.expiry_headroom``
(2) times their TTL.

**Why a short interval and a window.** The loop's speed is set by how often it acts, its noise by how
many requests each measurement holds; the window decouples the two, and weighting by requests keeps
bursts (which hit more) from biasing the integral. With the defaults (``h* = 0.45``, ``Kp = 0.4``,
``Ki = 0.05``, ``I_max = 5``), ``κ = 16``, ``pid.interval_s = 0.25`` and ``pid.window_s = 1`` it settles
in ~27 s after a change of catalogue at 200 requests/s. Measured on the bench's traces by an in-memory
replay of ``wavegraph bench cache`` over seeds 0-3: settled error 0.43-0.46 % (d-TTL 0.54-0.62 %),
overshoot after regime changes 2.3-3.4 % (d-TTL 7.5-9.1 %); on the quick trace (half the rate)
0.51-0.66 % (d-TTL 0.84-1.24 %). The previous defaults (1 s intervals, each alone, κ = 8) gave
1.05-1.15 %; without the conditional integration the loop overshoots 7-10 %.
An interval without lookups holds the TTL, the integral and the window (no information, no change).

No I/O here: :mod:`wavegraph.http.cache` measures, calls :meth:`TtlController.update` and publishes the
metrics; the benches replay traces through the same object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wavegraph.settings import PidSettings

__all__ = ["LOG_GAIN", "STALE_FLOOR", "PiGains", "PiStep", "TtlController"]

LOG_GAIN = 16.0  # κ: natural-log units of TTL per unit of u
STALE_FLOOR = 0.01  # below this share of stale lookups, the TTL is not what limits the hit ratio


@dataclass(frozen=True, slots=True)
class PiGains:
    """The loop's constants (see the module docstring); :meth:`from_settings` reads the ``pid:`` block."""

    target: float = 0.45
    kp: float = 0.4
    ki: float = 0.05
    i_max: float = 5.0
    interval_s: float = 0.25
    window_s: float = 1.0
    ttl_min_s: float = 1.0
    ttl_max_s: float = 86_400.0
    log_gain: float = LOG_GAIN

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError("target must be in (0, 1)")
        if not 0 < self.ttl_min_s <= self.ttl_max_s:
            raise ValueError("need 0 < ttl_min_s <= ttl_max_s")
        if self.i_max <= 0 or self.interval_s <= 0 or self.log_gain <= 0 or self.kp < 0 or self.ki < 0:
            raise ValueError("i_max, interval_s and log_gain must be > 0; kp, ki >= 0")
        if self.window_s < 0:
            raise ValueError("window_s must be >= 0 (0: each interval alone)")

    @classmethod
    def from_settings(cls, pid: PidSettings) -> PiGains:
        return cls(
            target=pid.target_hit_ratio,
            kp=pid.Kp,
            ki=pid.Ki,
            i_max=pid.I_max,
            interval_s=pid.interval_s,
            window_s=pid.window_s,
            ttl_min_s=pid.ttl_min_s,
            ttl_max_s=pid.ttl_max_s,
        )


@dataclass(frozen=True, slots=True)
class PiStep:
    """One update: the hit ratio measured over the window (``None`` when the interval had no lookups),
    ``e``, ``I``, ``u`` and the TTL set for new entries."""

    hit_ratio: float | None
    error: float
    integral: float
    u: float
    ttl_s: float


class TtlController:
    """The PI loop's state: ``ttl_s`` (the TTL to give new entries), ``integral``, the log base and the
    window's decayed counts (empty at start and after a restore).

    ``ttl_s`` starts at ``ttl_initial_s`` clamped to the bounds; :meth:`update` is the only mutator.
    """

    def __init__(self, gains: PiGains, ttl_initial_s: float, *, integral: float = 0.0) -> None:
        self.gains = gains
        self._lo = math.log(gains.ttl_min_s)
        self._hi = math.log(gains.ttl_max_s)
        self.integral = min(max(integral, -gains.i_max), gains.i_max)
        self._hits = self._lookups = self._stale = 0.0  # the window: A, N, S
        self._base = self._clip(
            math.log(max(ttl_initial_s, 1e-9)) - gains.log_gain * gains.ki * self.integral
        )
        self.ttl_s = math.exp(self._clip(self._base + gains.log_gain * gains.ki * self.integral))
        self.last = PiStep(None, 0.0, self.integral, gains.ki * self.integral, self.ttl_s)

    def _clip(self, x: float) -> float:
        return min(max(x, self._lo), self._hi)

    def update(
        self, hits: int, lookups: int, dt_s: float | None = None, *, stale: int | None = None
    ) -> PiStep:
        """Close one interval of ``dt_s`` seconds (default ``gains.interval_s``, i.e. ``Δt = 1``) with
        ``hits`` out of ``lookups``, ``stale`` of the misses being entries older than the TTL (None: not
        known, always integrate); return the step and set :attr:`ttl_s`."""
        if hits < 0 or lookups < 0 or hits > lookups:
            raise ValueError(f"need 0 <= hits <= lookups, got {hits}/{lookups}")
        if stale is not None and not 0 <= stale <= lookups - hits:
            raise ValueError(f"need 0 <= stale <= misses, got {stale} of {lookups - hits}")
        g = self.gains
        if lookups == 0:
            self.last = PiStep(None, 0.0, self.integral, self.last.u, self.ttl_s)
            return self.last
        dt = 1.0 if dt_s is None else dt_s / g.interval_s
        keep = math.exp(-dt * g.interval_s / g.window_s) if g.window_s > 0 else 0.0
        self._hits = keep * self._hits + hits
        self._lookups = keep * self._lookups + lookups
        self._stale = keep * self._stale + (stale or 0)
        hit_ratio = self._hits / self._lookups
        error = g.target - hit_ratio
        cold = stale is not None and error > 0 and self._stale < STALE_FLOOR * self._lookups
        unclamped = self.integral if cold else self.integral + error * dt
        integral = min(max(unclamped, -g.i_max), g.i_max)
        base = self._clip(self._base + g.log_gain * g.ki * (unclamped - integral))
        u = g.kp * error + g.ki * integral
        log_ttl = base + g.log_gain * u
        now = math.log(self.ttl_s)
        if (now >= self._hi - 1e-9 and log_ttl > self._hi) or (now <= self._lo + 1e-9 and log_ttl < self._lo):
            # the TTL is at its bound and the step would push past it: hold (no windup there)
            integral, base = self.integral, self._base
            u = g.kp * error + g.ki * integral
            log_ttl = base + g.log_gain * u
        self.integral, self._base = integral, base
        self.ttl_s = math.exp(self._clip(log_ttl))
        self.last = PiStep(hit_ratio, error, self.integral, u, self.ttl_s)
        return self.last
