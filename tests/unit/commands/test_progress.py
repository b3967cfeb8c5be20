"""Progress of the graph job: rich bars on a terminal (only for long tasks), nothing otherwise.

The bars are drawn on a real rich ``Console`` that records what it renders; rich draws a last frame when
the progress stops, so what the tests read does not depend on the refresh thread's timing.
"""

from __future__ import annotations

import io
import re
import threading

from rich.console import Console

from wavegraph.commands.progress import RichJobProgress, terminal_progress
from wavegraph.processors.graph_job.progress import NoProgress

SPINNER = re.compile("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]")


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120, record=True)


def _last_frame(console: Console, rows: int) -> list[str]:
    """The last ``rows`` bars drawn. The recording strips the cursor moves between frames, so a frame's
    first line is glued to the previous frame's last one: keep what follows the last spinner."""
    lines = console.export_text().rstrip("\n").splitlines()[-rows:]
    return [SPINNER.split(lines[0])[-1], *lines[1:]]


def test_no_terminal_means_no_progress_and_nothing_written() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, record=True)
    with terminal_progress(console) as progress:
        assert isinstance(progress, NoProgress)
        task = progress.task("rebuilding the graph from wavegraph.edges.v1", total=3)
        task.advance()
        task.describe("acme: embeddings v1 of 3 nodes: storing")
        task.close()
    assert out.getvalue() == ""
    assert console.export_text() == ""


def test_a_terminal_gets_rich_bars() -> None:
    console = _terminal()
    with terminal_progress(console) as progress:
        assert isinstance(progress, RichJobProgress)


def test_bars_show_the_phase_and_the_count_reported_from_another_thread() -> None:
    console = _terminal()
    with RichJobProgress(console, show_after_s=0.0) as progress:
        rebuild = progress.task("rebuilding the graph from wavegraph.edges.v1", total=7)
        recompute = progress.task("acme: embeddings v1 of 4 nodes", total=8)

        def work() -> None:
            for _ in range(5):
                rebuild.advance()
            recompute.advance(3)
            recompute.describe("acme: embeddings v1 of 4 nodes: storing")

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        assert progress.shown() == [
            "rebuilding the graph from wavegraph.edges.v1",
            "acme: embeddings v1 of 4 nodes: storing",
        ]
    # the last frame (drawn at stop) holds what the thread reported
    rebuild_bar, recompute_bar = _last_frame(console, 2)
    assert "rebuilding the graph from wavegraph.edges.v1" in rebuild_bar and "5/7" in rebuild_bar
    assert "acme: embeddings v1 of 4 nodes: storing" in recompute_bar and "3/8" in recompute_bar


def test_quick_tasks_are_never_drawn_and_a_closed_task_leaves_the_screen() -> None:
    console = _terminal()
    with RichJobProgress(console, show_after_s=3600.0) as progress:
        task = progress.task("quick", total=4)
        task.advance(4)
        assert progress.shown() == []
        task.close()
    assert "quick" not in console.export_text()

    console = _terminal()
    with RichJobProgress(console, show_after_s=0.0) as progress:
        done = progress.task("finished phase", total=1)
        going = progress.task("running phase", total=2)
        done.advance()
        done.close()
        going.advance()
        assert progress.shown() == ["running phase"]
    (last,) = _last_frame(console, 1)
    assert "running phase" in last and "1/2" in last
    assert "finished phase" not in last
