"""``POST /v1/ingest/audio`` against the real Kafka: WAV and raw PCM chunks reach the audio topic keyed
and headed as the processor expects; what the processor could not take is refused here (413/415/422)."""

from __future__ import annotations

import io
import uuid
import wave
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from test_ingest import ACME, api, topic_records

from wavegraph.events import audio_meta_from_headers
from wavegraph.settings import Settings
from wavegraph.streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.services

URL = "/v1/ingest/audio"
GLOBEX = {"Authorization": "Bearer dev-key-globex"}


def wav_bytes(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


@pytest.fixture
async def audio_topic(services: Settings) -> AsyncIterator[str]:
    name = f"test.http.audio.{uuid.uuid4().hex[:10]}"
    await ensure_topics(services.kafka, [name], partitions=2)
    yield name
    await delete_topics(services.kafka, [name])


def configure(settings: Settings, topic: str, **read: Any) -> Settings:
    topics = settings.kafka.topics.model_copy(update={"audio": topic})
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topics": topics}),
            "read": settings.read.model_copy(update=read),
        }
    )


async def test_wav_pcm_and_end_of_stream_chunks_reach_the_audio_topic(
    services: Settings, audio_topic: str
) -> None:
    settings = configure(services, audio_topic)
    pcm = np.zeros(8_000, dtype="<i2").tobytes()
    async with api(settings) as client:
        first = await client.post(
            f"{URL}?stream_id=call-1&seq=0&tenant=globex",  # a tenant parameter is ignored
            content=wav_bytes(),
            headers={**ACME, "Content-Type": "audio/wav"},
        )
        second = await client.post(
            URL,
            content=pcm,
            headers={
                **ACME,
                "Content-Type": "audio/L16; rate=8000; channels=1",
                "X-Stream-Id": "call-1",
                "X-Seq": "1",
            },
        )
        end = await client.post(
            f"{URL}?stream_id=call-1&seq=2&eos=true",
            content=b"",
            headers={**ACME, "Content-Type": "audio/wav"},
        )
        other = await client.post(
            f"{URL}?stream_id=call-1&seq=0",
            content=wav_bytes(),
            headers={**GLOBEX, "Content-Type": "audio/wav"},
        )
    assert [r.status_code for r in (first, second, end, other)] == [202] * 4, [
        r.text for r in (first, second)
    ]
    assert first.json() == {"accepted": 1, "stream_id": "call-1", "seq": 0, "bytes": len(wav_bytes())}
    records = await topic_records(settings, audio_topic, 4)
    metas = {(m.tenant, m.seq): (m, r) for r in records if (m := audio_meta_from_headers(r.headers))}
    assert set(metas) == {("acme", 0), ("acme", 1), ("acme", 2), ("globex", 0)}
    assert metas[("acme", 0)][0].encoding == "wav" and metas[("acme", 0)][1].value == wav_bytes()
    assert (metas[("acme", 1)][0].encoding, metas[("acme", 1)][0].sample_rate) == ("pcm_s16le", 8000)
    assert metas[("acme", 2)][0].eos and metas[("acme", 2)][1].value == b""
    assert {r.key for _, r in metas.values()} == {b"acme/call-1", b"globex/call-1"}
    assert (
        len({r.partition for (t, _), (_, r) in metas.items() if t == "acme"}) == 1
    )  # one stream, one partition


@pytest.mark.parametrize(
    ("query", "content_type", "body", "status", "words"),
    [
        ("stream_id=s&seq=0", "text/plain", b"hello", 415, "audio/wav"),
        ("stream_id=s&seq=0", "audio/wav", b"RIFF....WAVEjunk", 422, "WAV"),
        ("stream_id=s&seq=-1", "audio/wav", None, 422, "seq"),
        ("seq=0", "audio/wav", None, 422, "stream_id"),
        ("stream_id=a%00b&seq=0", "audio/wav", None, 422, "NUL"),
        (
            "stream_id=s&seq=0&sample_rate=4000",
            "application/octet-stream",
            b"\x00\x00" * 100,
            422,
            "sample_rate",
        ),
        ("stream_id=s&seq=0", "audio/wav", b"", 422, "zero-length"),
    ],
)
async def test_what_the_processor_could_not_take_is_refused_with_a_reason(
    services: Settings,
    audio_topic: str,
    query: str,
    content_type: str,
    body: bytes | None,
    status: int,
    words: str,
) -> None:
    settings = configure(services, audio_topic)
    async with api(settings) as client:
        r = await client.post(
            f"{URL}?{query}",
            content=wav_bytes() if body is None else body,
            headers={**ACME, "Content-Type": content_type},
        )
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    await topic_records(settings, audio_topic, 0, timeout_s=0.5)


async def test_a_chunk_over_the_limit_is_413_and_no_key_is_401(services: Settings, audio_topic: str) -> None:
    settings = configure(services, audio_topic, max_audio_bytes=4096)
    async with api(settings) as client:
        big = await client.post(
            f"{URL}?stream_id=s&seq=0", content=wav_bytes(1.0), headers={**ACME, "Content-Type": "audio/wav"}
        )
        anonymous = await client.post(
            f"{URL}?stream_id=s&seq=0", content=wav_bytes(), headers={"Content-Type": "audio/wav"}
        )
    assert big.status_code == 413 and big.json()["error"] == "body_too_large"
    assert anonymous.status_code == 401
