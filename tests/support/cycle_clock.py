"""A stand-in for ``time.perf_counter`` in a bench module: wall time cannot be made to give known
samples, this clock can."""

from __future__ import annotations


class CycleClock:
    """Every timed interval is a pair of reads; the i-th interval lasts ``steps_ms[i % len(steps_ms)]``
    milliseconds, so a run of ``m · len(steps_ms)`` sequential intervals measures each step exactly
    ``m`` times, whatever else the bench does between two intervals."""

    def __init__(self, steps_ms: list[float]) -> None:
        self.steps_ms = steps_ms
        self.now = 0.0
        self.reads = 0

    def perf_counter(self) -> float:
        if self.reads % 2:
            self.now += self.steps_ms[(self.reads // 2) % len(self.steps_ms)] / 1e3
        self.reads += 1
        return self.now
