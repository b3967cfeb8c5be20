"""``wavegraph bench asr``: Whisper real-time factor and word error rate, bare vs engine vs 2 s chunks.

On the same clips (jfk.wav and espeak-ng speech of known text), interleaved clip by clip so that
load changes on a shared machine hit every mode alike:

* ``bare``: pywhispercpp ``Model.transcribe`` on the whole file, nothing around it (with
  ``asr.threads`` threads, and in the full run also with 1 thread: on a busy 2-core machine whisper.cpp's
  spinning thread barriers make 2 threads slower than 1);
* ``engine``: the :class:`~wavegraph.processors.asr.engine.Transcriber` on the whole file;
* ``chunked``: the file cut into 2 s chunks, assembled into windows by the
  :class:`~wavegraph.processors.asr.windows.WindowAssembler`, each window transcribed by the engine.

``xrt`` = processing seconds / audio seconds over all clips; ``wer`` = word edits / reference words
over all clips; ``calls`` counts transcribe calls (one per window in chunked mode); ``wer_vs_whole``
compares the chunked transcript with the engine's whole-file one.
``ratio`` = chunked xRT / bare xRT for tiny.en (goal ≤ 1.3).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from wavegraph.errors import MissingPrerequisite
from wavegraph.processors.asr.audio import load_audio_file
from wavegraph.processors.asr.device import choose_route
from wavegraph.processors.asr.engine import Transcriber, install_log_bridge
from wavegraph.processors.asr.models import ensure_model
from wavegraph.processors.asr.samples import JFK_TEXT, SPEECH_TEXTS, Speech, espeak_speech, jfk_wav
from wavegraph.processors.asr.wer import edit_distance, normalize
from wavegraph.processors.asr.windows import WindowAssembler
from wavegraph.report import build_report, write_report
from wavegraph.settings import Settings, load_settings

CHUNK_S = 2.0


@dataclass
class _Tally:
    audio_s: float = 0.0
    processing_s: float = 0.0
    edits: int = 0
    words: int = 0
    calls: int = 0
    whole_edits: int = 0
    whole_words: int = 0
    texts: list[str] = field(default_factory=list)

    def add(self, reference: str, text: str, audio_s: float, processing_s: float, calls: int = 1) -> None:
        ref, hyp = normalize(reference), normalize(text)
        self.audio_s += audio_s
        self.processing_s += processing_s
        self.edits += edit_distance(ref, hyp)
        self.words += len(ref)
        self.calls += calls
        self.texts.append(text)

    def row(self, model: str, mode: str, threads: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "model": model,
            "mode": mode,
            "threads": threads,
            "xrt": self.processing_s / self.audio_s,
            "wer": self.edits / self.words,
            "audio_s": round(self.audio_s, 2),
            "processing_s": round(self.processing_s, 3),
            "calls": self.calls,
        }
        if self.whole_words:
            row["wer_vs_whole"] = self.whole_edits / self.whole_words
        return row


def _clips(settings: Settings, workdir: Path, quick: bool) -> list[Speech]:
    jfk = jfk_wav(settings)
    clips = [Speech(JFK_TEXT, jfk, load_audio_file(jfk, max_s=settings.asr.max_stream_s))]
    names = ["library"] if quick else list(SPEECH_TEXTS)
    try:
        clips += [espeak_speech(SPEECH_TEXTS[n], workdir / f"{n}.wav") for n in names]
    except MissingPrerequisite as exc:
        Console(stderr=True).print(f"[yellow]skipping synthetic speech: {exc}[/]")
    return clips


def _chunked(engine: Transcriber, settings: Settings, samples: np.ndarray) -> tuple[str, float, int]:
    step = int(CHUNK_S * 16_000)
    chunks = [samples[i : i + step] for i in range(0, len(samples), step)]
    assembler = WindowAssembler.from_settings(settings.asr)
    windows = []
    for seq, chunk in enumerate(chunks):
        windows += assembler.add("bench", seq, chunk, end_of_stream=seq == len(chunks) - 1)
    results = [engine.transcribe_sync(w.samples, start_s=w.start_s) for w in windows if w.samples.size]
    return " ".join(r.text for r in results), sum(r.processing_ms for r in results) / 1000, len(results)


def _bare_model(path: Path, threads: int) -> Any:
    from pywhispercpp.model import Model

    install_log_bridge()
    return Model(
        str(path),
        n_threads=threads,
        language="en",
        print_progress=False,
        print_realtime=False,
        redirect_whispercpp_logs_to=False,
    )


def _bench_model(
    settings: Settings, model: str, clips: list[Speech], console: Console, *, one_thread_too: bool
) -> list[dict[str, Any]]:
    verified = ensure_model(settings, model)
    threads = settings.asr.threads
    bare_counts = [threads, 1] if one_thread_too and threads != 1 else [threads]
    bare_models = {n: _bare_model(verified.path, n) for n in bare_counts}
    bare = {n: _Tally() for n in bare_counts}
    whole, chunked = _Tally(), _Tally()
    with Transcriber(settings, model, route=choose_route(settings.asr)) as engine:
        engine.warm_up()
        warm = clips[0].audio.samples
        for bare_model in bare_models.values():
            bare_model.transcribe(warm)
        engine.transcribe_sync(warm)
        for clip in clips:
            console.print(f"  {model}: {clip.path.name} ({clip.audio.duration_s:.1f} s)")
            samples = clip.audio.samples
            for n, bare_model in bare_models.items():
                started = time.perf_counter()
                segments = bare_model.transcribe(samples)
                elapsed = time.perf_counter() - started
                bare[n].add(clip.text, " ".join(s.text for s in segments), clip.audio.duration_s, elapsed)

            result = engine.transcribe_sync(samples)
            whole.add(clip.text, result.text, result.audio_s, result.processing_ms / 1000)

            text, processing_s, n_windows = _chunked(engine, settings, samples)
            chunked.add(clip.text, text, clip.audio.duration_s, processing_s, n_windows)
            ref = normalize(result.text)
            chunked.whole_edits += edit_distance(ref, normalize(text))
            chunked.whole_words += len(ref)
    bare_models.clear()
    return [
        *(bare[n].row(model, "bare", n) for n in bare_counts),
        whole.row(model, "engine", threads),
        chunked.row(model, "chunked", threads),
    ]


def run_asr_bench(
    settings: Settings | None = None, quick: bool = False, out: Path | None = None
) -> dict[str, Any]:
    """Run the bench, write ``bench/results/asr.json`` (or ``out``) and return the report."""
    settings = settings or load_settings()
    console = Console(stderr=True)
    models = ["tiny.en"] if quick else ["tiny.en", "base"]
    with tempfile.TemporaryDirectory(prefix="wavegraph-bench-asr-") as tmp:
        clips = _clips(settings, Path(tmp), quick)
        rows: list[dict[str, Any]] = []
        for model in models:
            rows += _bench_model(settings, model, clips, console, one_thread_too=not quick)
    by_mode = {(r["model"], r["mode"]): r for r in rows if r["threads"] == settings.asr.threads}
    ratio = by_mode[("tiny.en", "chunked")]["xrt"] / by_mode[("tiny.en", "bare")]["xrt"]
    for row in rows:
        row["vs_bare"] = row["xrt"] / by_mode[(row["model"], "bare")]["xrt"]  # bare at the same threads
    params = {
        "quick": quick,
        "models": models,
        "threads": settings.asr.threads,
        "chunk_s": CHUNK_S,
        "window_s": settings.asr.window_s,
        "clips": [{"file": c.path.name, "audio_s": round(c.audio.duration_s, 2)} for c in clips],
        "device": choose_route(settings.asr).device,
    }
    report = build_report("asr", params, rows, ratio)
    write_report(report, out)
    return report
