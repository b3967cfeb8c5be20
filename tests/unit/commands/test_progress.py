"""Progress of the graph job: rich bars on a terminal (only for long tasks), nothing otherwise."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from wavegraph.commands.progress import RichJobProgress, terminal_progress
from wavegraph.processors.graph_job.progress import NoProgress


def test_no_terminal_means_no_progress() -> None:
    with terminal_progress(Console(file=io.StringIO(), force_terminal=False)) as progress:
        assert isinstance(progress, NoProgress)
        task = progress.task("nothing", total=3)
        task.advance()
        task.close()


def test_rich_progress_shows_only_tasks_that_ran_long_and_takes_reports_from_threads() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with RichJobProgress(console, show_after_s=3600.0) as progress:
        task = progress.task("quick", total=4)

        def work() -> None:
            for _ in range(4):
                task.advance()

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        task.describe("quick: done")
        assert progress.shown() == []
        task.close()
    with RichJobProgress(console, show_after_s=0.0) as progress:
        task = progress.task("long", total=2)
        task.advance(2)
        assert progress.shown() == ["long"]
        console.print(*progress._progress.get_renderables())
        assert "long" in out.getvalue()
        task.close()
