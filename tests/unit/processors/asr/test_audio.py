"""Audio decoding and validation: every bad input is an InvalidEvent with a clear reason."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from wavegraph.errors import InvalidEvent
from wavegraph.processors.asr.audio import (
    TARGET_RATE,
    decode_audio,
    decode_pcm_s16le,
    decode_wav,
    from_float,
)

MAX_S = 60.0


def wav_bytes(frames: np.ndarray, rate: int, width: int = 2) -> bytes:
    """Integer PCM WAV through the stdlib writer; ``frames`` shaped (n,) or (n, channels)."""
    frames = frames.reshape(len(frames), -1) if frames.ndim == 2 else frames[:, None]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(frames.shape[1])
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(frames.astype(f"<i{width}" if width > 1 else np.uint8).tobytes())
    return buf.getvalue()


def float_wav_bytes(frames: np.ndarray, rate: int) -> bytes:
    """IEEE-float WAV (format 3), which the stdlib writer cannot produce."""
    data = np.asarray(frames, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_int16_is_scaled_to_float32() -> None:
    audio = decode_wav(wav_bytes(np.array([0, 16384, -32768, 32767]), 16000), max_s=MAX_S)
    assert audio.samples.dtype == np.float32
    np.testing.assert_allclose(audio.samples, [0.0, 0.5, -1.0, 32767 / 32768])
    assert (audio.source_rate, audio.source_channels) == (16000, 1)


def test_stereo_is_downmixed() -> None:
    frames = np.array([[16384, -16384], [8192, 8192]] * 100)
    audio = decode_wav(wav_bytes(frames, 16000), max_s=MAX_S)
    assert audio.source_channels == 2 and audio.samples.shape == (200,)
    np.testing.assert_allclose(audio.samples[:2], [0.0, 0.25])


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_to_16k_keeping_duration_and_pitch(rate: int) -> None:
    t = np.arange(rate) / rate  # one second of 440 Hz
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    audio = decode_wav(wav_bytes(tone, rate), max_s=MAX_S)
    assert abs(len(audio.samples) - TARGET_RATE) <= 1
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert abs(np.argmax(spectrum) * TARGET_RATE / len(audio.samples) - 440) < 2


def test_8_24_and_32_bit_pcm_and_float_wav() -> None:
    u8 = decode_wav(wav_bytes(np.array([128, 192, 0]), 16000, width=1), max_s=MAX_S)
    np.testing.assert_allclose(u8.samples, [0.0, 0.5, -1.0])
    i24 = np.array([1 << 22, -(1 << 23)])
    raw24 = b"".join(int(v).to_bytes(3, "little", signed=True) for v in i24)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(3)
        out.setframerate(16000)
        out.writeframes(raw24)
    np.testing.assert_allclose(decode_wav(buf.getvalue(), max_s=MAX_S).samples, [0.5, -1.0])
    i32 = decode_wav(wav_bytes(np.array([1 << 30]), 16000, width=4), max_s=MAX_S)
    np.testing.assert_allclose(i32.samples, [0.5])
    f32 = decode_wav(float_wav_bytes(np.array([0.25, -0.75]), 16000), max_s=MAX_S)
    np.testing.assert_allclose(f32.samples, [0.25, -0.75])


def test_raw_pcm_s16le() -> None:
    pcm = np.array([[16384, 0], [0, 16384]], dtype="<i2").tobytes()
    audio = decode_pcm_s16le(pcm, rate=16000, channels=2, max_s=MAX_S)
    np.testing.assert_allclose(audio.samples, [0.25, 0.25])
    same = decode_audio(pcm, encoding="pcm_s16le", sample_rate=16000, channels=2, max_s=MAX_S)
    np.testing.assert_array_equal(same.samples, audio.samples)


def _truncated() -> bytes:
    return wav_bytes(np.zeros(1000, dtype=np.int16), 16000)[:-500]


def _no_data_chunk() -> bytes:
    return wav_bytes(np.zeros(10, dtype=np.int16), 16000)[:36]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "zero-length payload"),
        (b"ID3\x04 this is an mp3, not a wav", "not a WAV file"),
        (_truncated(), "truncated WAV"),
        (_no_data_chunk(), "no data chunk"),
        (wav_bytes(np.zeros(0, dtype=np.int16), 16000), "zero-length audio"),
        (wav_bytes(np.zeros(100, dtype=np.int16), 96000), "sample rate 96000 Hz is outside 8000-48000 Hz"),
        (wav_bytes(np.zeros(100, dtype=np.int16), 4000), "sample rate 4000 Hz is outside"),
        (wav_bytes(np.zeros(61 * 8000, dtype=np.int16), 8000), "61.0 s long, over the limit of 60 s"),
        (float_wav_bytes(np.array([0.1, np.nan, 0.2]), 16000), "NaN or infinity"),
        (float_wav_bytes(np.array([0.1, np.inf]), 16000), "NaN or infinity"),
    ],
    ids=[
        "empty",
        "not-wav",
        "truncated",
        "no-data",
        "zero-frames",
        "rate-high",
        "rate-low",
        "too-long",
        "nan",
        "inf",
    ],
)
def test_bad_wav_is_an_invalid_event_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_wav(payload, max_s=MAX_S)
    assert reason in info.value.reason
    assert info.value.reason.startswith("audio: ")


@pytest.mark.parametrize(
    ("payload", "rate", "channels", "reason"),
    [
        (b"\x00\x01\x02", 16000, 1, "truncated PCM"),
        (b"\x00\x00\x00\x00\x00\x00", 16000, 2, "truncated PCM"),
        (b"", 16000, 1, "zero-length"),
        (b"\x00\x00", 50000, 1, "outside 8000-48000 Hz"),
        (b"\x00\x00", 16000, 9, "9 channels"),
    ],
)
def test_bad_pcm(payload: bytes, rate: int, channels: int, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        decode_pcm_s16le(payload, rate=rate, channels=channels, max_s=MAX_S)


def test_float_arrays_are_checked() -> None:
    with pytest.raises(InvalidEvent, match="NaN"):
        from_float(np.array([0.0, np.nan], dtype=np.float32), rate=16000, max_s=MAX_S)
    with pytest.raises(InvalidEvent, match="floating point"):
        from_float(np.array([0, 1], dtype=np.int16), rate=16000, max_s=MAX_S)
    stereo = from_float(np.array([[0.5, -0.5], [1.0, 0.0]]), rate=16000, max_s=MAX_S)
    np.testing.assert_allclose(stereo.samples, [0.0, 0.5])


def test_unknown_encoding() -> None:
    with pytest.raises(InvalidEvent, match="unknown encoding"):
        decode_audio(b"x", encoding="mp3", max_s=MAX_S)  # type: ignore[arg-type]
