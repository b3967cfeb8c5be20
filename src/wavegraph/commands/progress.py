"""Rich progress bars on stderr for long CLI work (the graph job's rebuild and recomputes, ...).

:func:`terminal_progress` gives bars when stderr is a terminal (tasks appear only once they have run
``show_after_s``) and :class:`~wavegraph.processors.graph_job.progress.NoProgress` otherwise. Reporting
is thread-safe (rich's ``Progress`` locks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from wavegraph.processors.graph_job.progress import JobProgress, NoProgress, ProgressTask

__all__ = ["RichJobProgress", "terminal_progress"]


class _DelayedProgress(Progress):
    """Renders only the tasks that have been running for at least ``show_after_s`` seconds."""

    def __init__(self, *columns: str | object, show_after_s: float, console: Console) -> None:
        super().__init__(*columns, console=console, transient=True)  # type: ignore[arg-type]
        self.show_after_s = show_after_s

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table([t for t in self.tasks if _shown(t, self.show_after_s)])


def _shown(task: Task, after: float) -> bool:
    return task.visible and (task.elapsed or 0.0) >= after


class _RichTask:
    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._id, n)

    def describe(self, text: str) -> None:
        self._progress.update(self._id, description=text)

    def close(self) -> None:
        self._progress.remove_task(self._id)


class RichJobProgress:
    """Rich progress bars (use as a context manager: it starts and stops the refresh thread)."""

    def __init__(self, console: Console | None = None, *, show_after_s: float = 1.0) -> None:
        self._progress = _DelayedProgress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            show_after_s=show_after_s,
            console=console or Console(stderr=True),
        )

    def __enter__(self) -> RichJobProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        return _RichTask(self._progress, self._progress.add_task(description, total=total))

    def shown(self) -> list[str]:
        """The descriptions of the tasks on screen now."""
        after = self._progress.show_after_s
        return [t.description for t in self._progress.tasks if _shown(t, after)]


@contextmanager
def terminal_progress(console: Console | None = None) -> Iterator[JobProgress]:
    """Rich progress when ``console`` (default: stderr) is a terminal, else :class:`NoProgress`."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield NoProgress()
        return
    with RichJobProgress(console) as progress:
        yield progress
