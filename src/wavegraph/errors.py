"""The small error hierarchy every wavegraph module raises from."""

from __future__ import annotations

from pathlib import Path


class WavegraphError(Exception):
    """Base of every error wavegraph raises on purpose."""


class ConfigError(WavegraphError):
    """A setting is missing or has a bad value; the message names it."""


class MissingPrerequisite(WavegraphError):
    """A program or package the command needs is not installed; the message names what to install."""


class ModelCorrupt(MissingPrerequisite):
    """A model file is present but fails its checksum or size check (corrupt, truncated or another
    version): the one error for every model wavegraph verifies (Whisper, MiniLM). The message says
    what is wrong and how to repair it; ``path`` is the file."""

    def __init__(self, detail: str, *, path: Path | None = None, fix: str = "") -> None:
        super().__init__(f"corrupt: {detail}" + (f"; {fix}" if fix else ""))
        self.path = path


class InvalidEvent(WavegraphError):
    """An event failed validation. ``reason`` names the field and the problem (free text, carried in the
    dead letter's header); ``code`` is one of a fixed set (:mod:`wavegraph.streams.reasons`), safe to use
    as a metric label."""

    def __init__(self, reason: str, code: str = "invalid_event") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class SinkBackpressureError(WavegraphError):
    """A sink cannot take more now; the consumer pauses and retries after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, reason: str = "sink is saturated") -> None:
        super().__init__(f"{reason} (retry after {retry_after:.1f}s)")
        self.retry_after = retry_after
        self.reason = reason


class SinkFatalError(WavegraphError):
    """A store refused in a way neither a retry nor a dead letter can fix (bad credentials, a read-only or
    missing database): the processor stops with this one sentence instead of looping on the same batch."""


class BudgetExceeded(WavegraphError):
    """A tenant's differential-privacy epsilon budget would be exceeded."""
