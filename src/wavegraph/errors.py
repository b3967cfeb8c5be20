"""The small error hierarchy every wavegraph module raises from."""

from __future__ import annotations


class WavegraphError(Exception):
    """Base of every error wavegraph raises on purpose."""


class ConfigError(WavegraphError):
    """A setting is missing or has a bad value; the message names it."""


class MissingPrerequisite(WavegraphError):
    """A program or package the command needs is not installed; the message names what to install."""


class InvalidEvent(WavegraphError):
    """An event failed validation. ``reason`` names the field and the problem."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SinkBackpressureError(WavegraphError):
    """A sink cannot take more now; the consumer pauses and retries after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, reason: str = "sink is saturated") -> None:
        super().__init__(f"{reason} (retry after {retry_after:.1f}s)")
        self.retry_after = retry_after
        self.reason = reason


class BudgetExceeded(WavegraphError):
    """A tenant's differential-privacy epsilon budget would be exceeded."""
