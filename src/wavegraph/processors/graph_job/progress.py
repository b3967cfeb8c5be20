"""How the graph job reports the progress of its long steps (rebuild, recomputes).

The job reports through :class:`JobProgress`; :class:`NoProgress` ignores it. The CLI passes rich
progress bars (:func:`wavegraph.commands.progress.terminal_progress`); the job itself draws nothing.
Implementations must be thread-safe: a recompute thread may report.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["JobProgress", "NoProgress", "ProgressTask"]


class ProgressTask(Protocol):
    def advance(self, n: float = 1) -> None: ...
    def describe(self, text: str) -> None: ...
    def close(self) -> None: ...


class JobProgress(Protocol):
    def task(self, description: str, total: float | None = None) -> ProgressTask: ...


class _NoTask:
    def advance(self, n: float = 1) -> None:
        pass

    def describe(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class NoProgress:
    """Reports nowhere."""

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        return _NoTask()
