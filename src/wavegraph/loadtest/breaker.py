"""Recording the Neo4j breaker's transitions of an in-process edge processor.

The sink reports each transition three ways: the ``breaker_state`` gauge, the
``breaker_transitions_total{from_state, to_state}`` counter and a warning on its logger. The counter
gives exact counts but no order; the log records give the order. :class:`BreakerRecorder` keeps both
and :attr:`path` is the sequence of states (e.g. ``[0, 1, 2, 1, 2, 0]``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

from wavegraph import metrics
from wavegraph.sinks import breaker_state

SINK_LOGGER = "wavegraph.sinks.neo4j"
_CODES = {name: code for code, name in breaker_state.NAMES.items()}


@dataclass(frozen=True)
class Transition:
    at: float  # time.time()
    before: int
    after: int


class _Handler(logging.Handler):
    def __init__(self, out: list[Transition]) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if record.msg == "neo4j breaker %s -> %s" and isinstance(args, tuple) and len(args) == 2:
            self.out.append(Transition(record.created, _CODES[str(args[0])], _CODES[str(args[1])]))


class BreakerRecorder:
    """``with BreakerRecorder() as rec:`` … ``rec.path``, ``rec.transitions``, ``rec.counted()``."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self._handler = _Handler(self.transitions)
        self._logger = logging.getLogger(SINK_LOGGER)
        self._level = self._logger.level
        self._before: Counter[tuple[int, int]] = Counter()

    def __enter__(self) -> BreakerRecorder:
        self._before = _counter_values()
        if not self._logger.isEnabledFor(logging.WARNING):
            self._logger.setLevel(logging.WARNING)
        self._logger.addHandler(self._handler)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)

    @property
    def path(self) -> list[int]:
        """The states visited, starting from the first transition's origin."""
        if not self.transitions:
            return []
        return [self.transitions[0].before, *(t.after for t in self.transitions)]

    def counted(self) -> dict[str, int]:
        """Transitions counted by ``breaker_transitions_total`` since entering, as ``"0->1"`` keys."""
        now = _counter_values()
        return {
            f"{a}->{b}": n - self._before[(a, b)] for (a, b), n in now.items() if n > self._before[(a, b)]
        }

    def state_at(self, when: float) -> int:
        """The breaker state at ``time.time()`` value ``when`` according to the recorded transitions."""
        state = breaker_state.CLOSED
        for t in self.transitions:
            if t.at > when:
                break
            state = t.after
        return state

    def open_intervals(self) -> list[tuple[float, float]]:
        """(opened, left OPEN) time pairs; an interval still open ends now."""
        out: list[tuple[float, float]] = []
        opened: float | None = None
        for t in self.transitions:
            if t.after == breaker_state.OPEN:
                opened = t.at
            elif opened is not None:
                out.append((opened, t.at))
                opened = None
        if opened is not None:
            out.append((opened, time.time()))
        return out


def _counter_values() -> Counter[tuple[int, int]]:
    values: Counter[tuple[int, int]] = Counter()
    for family in metrics.BREAKER_TRANSITIONS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (_CODES[sample.labels["from_state"]], _CODES[sample.labels["to_state"]])
                values[key] = int(sample.value)
    return values
