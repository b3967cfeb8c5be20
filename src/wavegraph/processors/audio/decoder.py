"""Decoding ``wavegraph.audio.v1`` records into validated chunks of 16 kHz mono float32 audio.

A record is refused (→ dead letter, with the reason) when it is larger than ``runtime.max_event_bytes``,
when a header is missing or bad (``seq``, ``sample_rate`` outside 8–48 kHz, ...), when its tenant owns no
API key, or when its audio does not decode (corrupt or truncated WAV, zero-length payload, NaN or
infinite float samples, a rate outside 8–48 kHz inside the WAV, longer than ``asr.max_stream_s``).
The end-of-stream marker may have an empty value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from aiokafka.structs import ConsumerRecord

from wavegraph.errors import InvalidEvent
from wavegraph.events import audio_meta_from_headers
from wavegraph.processors.asr.audio import decode_audio
from wavegraph.settings import Settings

_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """One decoded audio event: its stream, sequence number and samples (mono float32, 16 kHz)."""

    tenant: str
    stream_id: str
    seq: int
    samples: np.ndarray
    eos: bool = False

    @property
    def stream_key(self) -> str:
        """``tenant/stream_id`` (a tenant holds no ``/``), the Kafka key and the assembler's stream id."""
        return f"{self.tenant}/{self.stream_id}"


class AudioDecoder:
    """The processor's decoder: headers, tenant, size and audio checks; raises :class:`InvalidEvent`."""

    def __init__(self, settings: Settings) -> None:
        self.max_bytes = settings.runtime.max_event_bytes
        self.max_s = settings.asr.max_stream_s
        self.tenants = frozenset(settings.http.api_keys.values())

    def __call__(self, record: ConsumerRecord[bytes, bytes]) -> AudioChunk:
        value = record.value or b""
        if len(value) > self.max_bytes:
            raise InvalidEvent(f"oversized: {len(value)} bytes > limit {self.max_bytes}")
        meta = audio_meta_from_headers(record.headers)
        if self.tenants and meta.tenant not in self.tenants:
            raise InvalidEvent(f"tenant: unknown tenant {meta.tenant!r}")
        if not value and meta.eos:
            samples = _EMPTY
        else:
            samples = decode_audio(
                value,
                encoding=meta.encoding,
                sample_rate=meta.sample_rate,
                channels=meta.channels,
                max_s=self.max_s,
            ).samples
        return AudioChunk(meta.tenant, meta.stream_id, meta.seq, samples, meta.eos)
