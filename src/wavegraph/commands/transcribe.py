"""``wavegraph transcribe FILE.wav [--model tiny.en|base] [--json]``: one file, no Kafka."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from wavegraph.errors import WavegraphError


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes):02d}:{rest:05.2f}"


def transcribe_command(
    file: Annotated[Path, typer.Argument(help="A WAV file (PCM or float, 8-48 kHz, mono or stereo).")],
    model: Annotated[str, typer.Option("--model", "-m", help="tiny.en or base.")] = "tiny.en",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
) -> None:
    """Transcribe FILE offline and print its segments with times, the device and the real-time factor."""
    from wavegraph.processors.asr.audio import load_audio_file
    from wavegraph.processors.asr.engine import Transcriber
    from wavegraph.processors.asr.models import MODELS
    from wavegraph.settings import load_settings

    err = Console(stderr=True)

    def fail(message: str) -> typer.Exit:
        err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
        return typer.Exit(2)

    if model not in MODELS:
        raise fail(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    logging.getLogger("pywhispercpp").setLevel(logging.WARNING)
    try:
        settings = load_settings()
        if not file.is_file():
            raise fail(f"{file}: no such file")
        audio = load_audio_file(file, max_s=settings.asr.max_stream_s)
        started = time.perf_counter()
        with err.status(f"loading Whisper {model} (converted on first use)…"):
            transcriber = Transcriber(settings, model)
            transcriber.warm_up()
        load_s = time.perf_counter() - started
        with transcriber, err.status(f"transcribing {audio.duration_s:.1f} s of audio…"):
            result = transcriber.transcribe_sync(audio.samples)
    except WavegraphError as exc:
        raise fail(f"{file}: {exc}" if "audio:" in str(exc) else str(exc)) from None
    except OSError as exc:
        raise fail(f"{file}: {exc.strerror or exc}") from None

    if json_out:
        payload = {"file": str(file), **result.to_dict(), "load_s": load_s}
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out = Console()
    for seg in result.segments:
        out.print(
            f"[cyan][{_clock(seg.start_s)} → {_clock(seg.end_s)}][/] {escape(seg.text)}", soft_wrap=True
        )
    if not result.segments:
        out.print("[dim](no speech)[/]")
    out.print(
        f"[dim]model[/] {result.model}  [dim]device[/] {result.device}  "
        f"[dim]audio[/] {result.audio_s:.2f} s  [dim]processing[/] {result.processing_ms / 1000:.2f} s  "
        f"[dim]xRT[/] [bold]{result.xrt:.3f}[/]  [dim](model load {load_s:.2f} s)[/]",
        soft_wrap=True,
    )
