"""``wavegraph models list | prepare``: the offline Whisper models, their packages, cache and checksums."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from wavegraph.errors import WavegraphError
from wavegraph.settings import load_settings

app = typer.Typer(help="Offline Whisper models: list, convert and verify.", no_args_is_help=True)


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


@app.command("list")
def list_models(
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip hashing the converted files.")] = False,
) -> None:
    """Each model: its source packages, whether installed, converted and verified (sha256), its size."""
    from wavegraph.processors.asr.models import MODELS, model_status

    settings = load_settings()
    console = Console()
    table = Table(title=f"Whisper models (cache: {settings.services.cache_dir / 'models'})")
    for column in ("model", "source package", "installed", "converted", "verified sha256", "size"):
        table.add_column(column)
    problems = []
    for name in MODELS:
        status = model_status(settings, name, verify=not no_verify)
        if status.verified and status.sha256:
            verified = f"[green]{status.sha256[:16]}…[/]"
        elif status.converted and no_verify:
            verified = "[yellow]not checked[/]"
        else:
            verified = "[red]no[/]" if status.converted else "-"
        table.add_row(
            name,
            "\n".join(status.packages),
            _mark(status.installed),
            _mark(status.converted),
            verified,
            _size(status.size),
        )
        if status.problem:
            problems.append(f"{name}: {status.problem}")
    console.print(table)
    for problem in problems:
        console.print(f"[red]{escape(problem)}[/]", soft_wrap=True)


@app.command()
def prepare(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="tiny.en or base (repeatable; default: all).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Reconvert a cached file that fails its checksum.")
    ] = False,
) -> None:
    """Convert the models from their installed packages into the cache and verify them."""
    from wavegraph.processors.asr.models import MODELS, prepare_model

    settings = load_settings()
    console = Console(stderr=True)
    names = model or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        console.print(
            f"[bold red]error:[/] unknown model {', '.join(unknown)}; choose from {', '.join(MODELS)}"
        )
        raise typer.Exit(2)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            for name in names:
                task = progress.add_task(f"{name}: checking", total=None)

                def advance(done: int, total: int, task: TaskID = task, name: str = name) -> None:
                    progress.update(task, description=f"{name}: converting", completed=done, total=total)

                verified = prepare_model(settings, name, advance, force=force)
                progress.update(task, description=f"{name}: verified", completed=1, total=1)
                progress.console.print(
                    f"[green]{name}[/] {verified.path} {verified.size:,} bytes sha256 {verified.sha256}",
                    soft_wrap=True,
                )
    except WavegraphError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
