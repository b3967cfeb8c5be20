"""Decode and validate audio into what Whisper takes: mono float32 samples in [-1, 1] at 16 kHz.

Accepted: WAV (PCM 8/16/24/32-bit integer or 32/64-bit float, plain or WAVE_FORMAT_EXTENSIBLE) and raw
little-endian signed 16-bit PCM with a given rate and channel count; 1 to 8 channels (averaged to mono);
8–48 kHz (resampled with soxr). Anything else raises :class:`~wavegraph.errors.InvalidEvent` whose
``reason`` says what is wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soxr

from wavegraph.errors import InvalidEvent

TARGET_RATE = 16_000
MIN_RATE = 8_000
MAX_RATE = 48_000
MAX_CHANNELS = 8

_PCM = 0x0001
_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
_UNKNOWN_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class Audio:
    """Decoded audio ready for Whisper, with where it came from."""

    samples: np.ndarray
    """Mono float32 at :data:`TARGET_RATE`."""
    source_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / TARGET_RATE


def decode_wav(data: bytes, *, max_s: float) -> Audio:
    """Decode a whole WAV file held in memory."""
    if not data:
        raise InvalidEvent("audio: zero-length payload")
    fmt, payload = _riff_chunks(data)
    tag, channels, rate, bits = fmt
    frame_bytes = channels * bits // 8
    if len(payload) % frame_bytes:
        raise InvalidEvent(
            f"audio: truncated WAV: {len(payload)} data bytes is not a whole number of "
            f"{frame_bytes}-byte frames"
        )
    _check_shape(rate, channels, len(payload) // frame_bytes, max_s)
    if tag == _FLOAT:
        if bits not in (32, 64):
            raise InvalidEvent(f"audio: unsupported float WAV of {bits} bits per sample")
        raw = np.frombuffer(payload, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
        return _finish(raw.reshape(-1, channels), rate, channels)
    return _finish(_int_pcm(payload, bits).reshape(-1, channels), rate, channels)


def decode_pcm_s16le(data: bytes, *, rate: int, channels: int, max_s: float) -> Audio:
    """Decode headerless signed 16-bit little-endian PCM, interleaved when ``channels`` > 1."""
    if not data:
        raise InvalidEvent("audio: zero-length payload")
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidEvent(f"audio: {channels} channels, expected 1 to {MAX_CHANNELS}")
    if len(data) % (2 * channels):
        raise InvalidEvent(
            f"audio: truncated PCM: {len(data)} bytes is not a whole number of {2 * channels}-byte frames"
        )
    _check_shape(rate, channels, len(data) // (2 * channels), max_s)
    return _finish(_int_pcm(data, 16).reshape(-1, channels), rate, channels)


def from_float(samples: np.ndarray, *, rate: int, max_s: float) -> Audio:
    """Validate float samples (shape ``(n,)`` or ``(n, channels)``, nominally in [-1, 1])."""
    array = np.asarray(samples)
    if array.dtype.kind != "f":
        raise InvalidEvent(f"audio: samples must be floating point in [-1, 1], got {array.dtype}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise InvalidEvent(f"audio: samples of shape {array.shape}, expected (n,) or (n, channels)")
    channels = array.shape[1]
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidEvent(f"audio: {channels} channels, expected 1 to {MAX_CHANNELS}")
    _check_shape(rate, channels, array.shape[0], max_s)
    return _finish(array.astype(np.float32, copy=False), rate, channels)


def decode_audio(
    data: bytes,
    *,
    encoding: Literal["wav", "pcm_s16le"],
    sample_rate: int = TARGET_RATE,
    channels: int = 1,
    max_s: float,
) -> Audio:
    """Decode one payload as described by an audio event's headers (rate and channels: PCM only)."""
    if encoding == "wav":
        return decode_wav(data, max_s=max_s)
    if encoding == "pcm_s16le":
        return decode_pcm_s16le(data, rate=sample_rate, channels=channels, max_s=max_s)
    raise InvalidEvent(f"audio: unknown encoding {encoding!r}, expected wav or pcm_s16le")


def load_audio_file(path: Path, *, max_s: float) -> Audio:
    """Read and decode a WAV file from disk."""
    return decode_wav(path.read_bytes(), max_s=max_s)


def _riff_chunks(data: bytes) -> tuple[tuple[int, int, int, int], bytes]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidEvent("audio: not a WAV file (no RIFF/WAVE header)")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        if cid == b"data":
            if fmt is None:
                raise InvalidEvent("audio: corrupt WAV: data chunk before the fmt chunk")
            if size == _UNKNOWN_SIZE:
                size = len(data) - body_start  # streamed WAV whose writer could not seek back
            if body_start + size > len(data):
                present = len(data) - body_start
                raise InvalidEvent(
                    f"audio: truncated WAV: data chunk declares {size} bytes, {present} present"
                )
            return fmt, data[body_start : body_start + size]
        if body_start + size > len(data):
            raise InvalidEvent(f"audio: truncated WAV: {cid!r} chunk runs past the end of the file")
        if cid == b"fmt ":
            fmt = _parse_fmt(data[body_start : body_start + size])
        pos = body_start + size + (size & 1)
    if fmt is None:
        raise InvalidEvent("audio: corrupt WAV: no fmt chunk")
    raise InvalidEvent("audio: corrupt or truncated WAV: no data chunk")


def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise InvalidEvent(f"audio: corrupt WAV: fmt chunk of {len(body)} bytes")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 26:
            raise InvalidEvent("audio: corrupt WAV: short WAVE_FORMAT_EXTENSIBLE fmt chunk")
        (tag,) = struct.unpack_from("<H", body, 24)  # first two bytes of the sub-format GUID
    if tag not in (_PCM, _FLOAT):
        raise InvalidEvent(f"audio: unsupported WAV encoding 0x{tag:04x} (only PCM and IEEE float)")
    if channels == 0 or channels > MAX_CHANNELS:
        raise InvalidEvent(f"audio: {channels} channels, expected 1 to {MAX_CHANNELS}")
    if tag == _PCM and bits not in (8, 16, 24, 32):
        raise InvalidEvent(f"audio: unsupported PCM WAV of {bits} bits per sample")
    return tag, channels, rate, bits


def _check_shape(rate: int, channels: int, frames: int, max_s: float) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidEvent(f"audio: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    if frames == 0:
        raise InvalidEvent("audio: zero-length audio (no samples)")
    duration = frames / rate
    if duration > max_s:
        raise InvalidEvent(f"audio: {duration:.1f} s long, over the limit of {max_s:g} s")


def _int_pcm(payload: bytes, bits: int) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1): 8-bit WAV is unsigned, wider samples are signed."""
    if bits == 8:
        return (np.frombuffer(payload, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if bits == 16:
        return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
    if bits == 24:
        b = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float32) / float(1 << 23)
    return (np.frombuffer(payload, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)


def _finish(frames: np.ndarray, rate: int, channels: int) -> Audio:
    if not np.isfinite(frames).all():
        raise InvalidEvent("audio: samples contain NaN or infinity")
    mono = frames[:, 0] if channels == 1 else frames.mean(axis=1, dtype=np.float32)
    if rate != TARGET_RATE:
        mono = soxr.resample(mono, rate, TARGET_RATE, quality="HQ")
    return Audio(np.ascontiguousarray(mono, dtype=np.float32), rate, channels)
