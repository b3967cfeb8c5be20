"""Decoding audio records: what becomes a chunk and what becomes a dead letter, with which reason."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest
from aiokafka.structs import ConsumerRecord

from wavegraph.errors import InvalidEvent
from wavegraph.processors.audio.decoder import AudioDecoder
from wavegraph.settings import Settings

SETTINGS = Settings()


def rec(value: bytes, **headers: object) -> ConsumerRecord[bytes, bytes]:
    fields: dict[str, object] = {"tenant": "acme", "stream_id": "s", "seq": 0, **headers}
    encoded = [(k, str(v).encode()) for k, v in fields.items() if v is not None]
    return ConsumerRecord("audio", 0, 7, 0, 0, None, value, None, -1, len(value), encoded)


def pcm(seconds: float, rate: int = 16_000) -> bytes:
    return (np.sin(np.arange(int(seconds * rate)) / 9.0) * 8000).astype("<i2").tobytes()


def wav(data: bytes, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data)
    return buf.getvalue()


def float_wav(samples: np.ndarray, rate: int = 16_000) -> bytes:
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_pcm_wav_stereo_and_the_empty_end_marker_decode() -> None:
    decode = AudioDecoder(SETTINGS)
    chunk = decode(rec(pcm(1.0, 8000), sample_rate=8000))
    assert chunk.samples.dtype == np.float32 and chunk.samples.size == 16_000
    assert decode(rec(wav(pcm(0.5)), encoding="wav")).samples.size == 8000
    stereo = decode(rec(pcm(1.0), channels=2))
    assert stereo.samples.size == 8000
    end = decode(rec(b"", seq=3, eos="true"))
    assert end.eos and end.samples.size == 0 and end.seq == 3 and end.stream_key == "acme/s"


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"RIFF\x00\x00", {"encoding": "wav"}, "audio: not a WAV file"),
        (wav(pcm(1.0))[:-1001], {"encoding": "wav"}, "audio: truncated WAV"),
        (b"", {}, "audio: zero-length payload"),
        (pcm(1.0)[:-1], {}, "audio: truncated PCM"),
        (float_wav(np.array([0.1, np.nan, 0.2])), {"encoding": "wav"}, "audio: samples contain NaN"),
        (pcm(0.1), {"sample_rate": 96000}, "header sample_rate: Input should be less than or equal to 48000"),
        (wav(pcm(0.1, 4000), rate=4000), {"encoding": "wav"}, "audio: sample rate 4000 Hz is outside"),
        (pcm(0.1), {"seq": None}, "header seq: Field required"),
        (pcm(0.1), {"tenant": "initech"}, "tenant: unknown tenant 'initech'"),
        (b"\x00" * (SETTINGS.runtime.max_event_bytes + 2), {}, "oversized: "),
    ],
)
def test_bad_audio_is_an_invalid_event_with_its_reason(
    value: bytes, headers: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        AudioDecoder(SETTINGS)(rec(value, **headers))
    assert info.value.reason.startswith(reason)


def test_a_chunk_longer_than_a_stream_may_be_is_refused() -> None:
    short = SETTINGS.model_copy(update={"asr": SETTINGS.asr.model_copy(update={"max_stream_s": 1.0})})
    with pytest.raises(InvalidEvent, match="over the limit of 1 s"):
        AudioDecoder(short)(rec(pcm(2.0)))
