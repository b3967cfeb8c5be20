"""``wavegraph produce edges|audio``: publish sample or user data to the input topics."""

from __future__ import annotations

import asyncio
import sys
import wave
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wavegraph.settings import load_settings
from wavegraph.streams.publish import edge_key, edge_lines, publish_audio, publish_values, wav_chunks
from wavegraph.streams.topics import ensure_topics

app = typer.Typer(help="Publish edges or audio to wavegraph's input topics.", no_args_is_help=True)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


@app.command()
def edges(
    file: str = typer.Argument(
        ..., help="CSV (header with src,dst[,tenant,rel,weight,ts]) or JSON lines; - for stdin."
    ),
    tenant: str = typer.Option("acme", help="Tenant for CSV rows without a tenant column."),
) -> None:
    """Publish edge events to wavegraph.edges.v1 and print how many the broker acknowledged."""
    settings = load_settings()
    if file == "-":
        lines = sys.stdin.readlines()
    else:
        path = Path(file)
        if not path.is_file():
            raise typer.BadParameter(f"{file} is not a file")
        lines = path.read_text().splitlines()
    values = list(edge_lines(lines, tenant))
    asyncio.run(ensure_topics(settings.kafka))
    with _progress() as progress:
        task = progress.add_task("edges", total=len(values))
        sent = asyncio.run(
            publish_values(
                settings.kafka,
                settings.kafka.topics.edges,
                values,
                lambda n: progress.advance(task, n),
                key=edge_key,
            )
        )
    Console().print(f"published [bold]{sent}[/] edge events to {settings.kafka.topics.edges}")


@app.command()
def audio(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A 16-bit PCM WAV file."),
    stream_id: str = typer.Option(..., "--stream-id", help="The audio stream this file belongs to."),
    tenant: str = typer.Option("acme"),
    chunk_s: float = typer.Option(2.0, "--chunk-s", min=0.1, help="Seconds of audio per event."),
) -> None:
    """Chunk a WAV file into audio events on wavegraph.audio.v1 (then an end-of-stream marker)."""
    settings = load_settings()
    try:
        with wave.open(str(file), "rb") as w:
            total = int(w.getnframes() / max(1, int(w.getframerate() * chunk_s))) + 2
        chunks = list(wav_chunks(file, tenant, stream_id, chunk_s))
    except (wave.Error, ValueError, EOFError) as exc:
        raise typer.BadParameter(f"{file}: {exc}") from None
    asyncio.run(ensure_topics(settings.kafka))
    with _progress() as progress:
        task = progress.add_task(f"audio {stream_id}", total=total)
        sent = asyncio.run(publish_audio(settings.kafka, chunks, lambda n: progress.advance(task, n)))
    Console().print(
        f"published [bold]{sent}[/] audio events (incl. end-of-stream) to {settings.kafka.topics.audio}"
    )
