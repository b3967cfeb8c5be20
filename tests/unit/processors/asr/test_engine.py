"""Real transcription with tiny.en on the CPU route: accuracy, windows vs whole file, metrics, asyncio."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from wavegraph.errors import InvalidEvent
from wavegraph.metrics import REGISTRY
from wavegraph.processors.asr import device
from wavegraph.processors.asr.audio import Audio
from wavegraph.processors.asr.engine import Transcriber, Transcript
from wavegraph.processors.asr.samples import JFK_TEXT, Speech
from wavegraph.processors.asr.wer import wer
from wavegraph.processors.asr.windows import WindowAssembler
from wavegraph.settings import Settings

CPU = {"device": "cpu", "model": "tiny.en"}


def test_jfk_on_tiny_en(transcriber: Transcriber, jfk: Audio) -> None:
    before = REGISTRY.get_sample_value("wavegraph_audio_seconds_total", CPU) or 0.0
    result = transcriber.transcribe_sync(jfk.samples, start_s=100.0)
    assert wer(JFK_TEXT, result.text) <= 0.10, result.text
    assert (result.model, result.device) == ("tiny.en", "cpu")
    assert result.audio_s == pytest.approx(11.0, abs=0.01)
    assert result.xrt == pytest.approx(result.processing_ms / 1000 / result.audio_s)
    starts = [s.start_s for s in result.segments]
    assert starts == sorted(starts) and starts[0] == pytest.approx(100.0)
    assert all(100.0 <= s.start_s < s.end_s <= 111.5 for s in result.segments)
    # the CPU route was chosen with GPU detection patched off; its xRT is exported under device="cpu"
    assert transcriber.route.device == "cpu" and transcriber.batch_size == max(1, 8 // 4)
    assert REGISTRY.get_sample_value("whisper_xrt", CPU) == pytest.approx(result.xrt)
    assert (REGISTRY.get_sample_value("whisper_xrt_ratio_count", CPU) or 0) >= 1
    after = REGISTRY.get_sample_value("wavegraph_audio_seconds_total", CPU)
    assert after == pytest.approx(before + result.audio_s)


def test_espeak_speech_of_known_text(long_speech: Speech, long_speech_whole: Transcript) -> None:
    assert long_speech.audio.duration_s > 30.0
    assert wer(long_speech.text, long_speech_whole.text) <= 0.15, long_speech_whole.text


def test_two_second_chunks_through_windows_match_the_whole_file(
    transcriber: Transcriber, settings: Settings, long_speech: Speech, long_speech_whole: Transcript
) -> None:
    samples = long_speech.audio.samples
    step = 2 * 16_000
    chunks = [samples[i : i + step] for i in range(0, len(samples), step)]
    assembler = WindowAssembler.from_settings(settings.asr)
    windows = []
    for seq, chunk in enumerate(chunks):
        windows += assembler.add("library", seq, chunk, end_of_stream=seq == len(chunks) - 1)
    assert len(windows) == 2 and windows[-1].final

    parts = [transcriber.transcribe_sync(w.samples, start_s=w.start_s) for w in windows]
    chunked = " ".join(p.text for p in parts)
    assert wer(long_speech_whole.text, chunked) <= 0.05, (long_speech_whole.text, chunked)
    assert wer(long_speech.text, chunked) <= 0.15
    second = parts[1].segments
    assert (
        second[0].start_s == pytest.approx(windows[1].start_s)
        and second[-1].end_s <= samples.size / 16_000 + 1
    )


def test_unscaled_or_bad_samples_are_refused(transcriber: Transcriber) -> None:
    with pytest.raises(TypeError, match="float32"):
        transcriber.transcribe_sync(np.zeros(16_000, dtype=np.int16))
    with pytest.raises(TypeError, match="mono"):
        transcriber.transcribe_sync(np.zeros((16_000, 2), dtype=np.float32))
    with pytest.raises(InvalidEvent, match="NaN"):
        transcriber.transcribe_sync(np.full(16_000, np.nan, dtype=np.float32))
    with pytest.raises(InvalidEvent, match="zero-length"):
        transcriber.transcribe_sync(np.zeros(0, dtype=np.float32))


async def test_async_transcription_does_not_block_the_event_loop(
    transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No clock: the worker thread waits for the event loop to answer before it decodes, and the loop
    counts its turns while the worker is inside whisper.cpp. Were ``transcribe`` run on (or blocking) the
    loop's thread, the loop could not answer and the worker would give up after a minute."""
    loop_thread = threading.get_ident()
    answered, inside, finished = threading.Event(), threading.Event(), threading.Event()
    workers: list[int] = []
    real = transcriber._run

    def handshake(samples: np.ndarray, start_s: float) -> Transcript:
        workers.append(threading.get_ident())
        try:
            if not answered.wait(timeout=60):
                raise RuntimeError("the event loop never ran while the worker waited")
            inside.set()
            return real(samples, start_s)
        finally:
            inside.clear()
            finished.set()

    monkeypatch.setattr(transcriber, "_run", handshake)
    turns_inside = 0

    async def loop_turns() -> None:
        nonlocal turns_inside
        answered.set()
        while not finished.is_set():
            turns_inside += inside.is_set()
            await asyncio.sleep(0.005)

    turning = asyncio.create_task(loop_turns())
    result = await transcriber.transcribe(np.zeros(3 * 16_000, dtype=np.float32))
    await turning
    assert workers and workers[0] != loop_thread
    assert turns_inside >= 1  # the loop kept turning while whisper.cpp ran
    # silence comes back from whisper.cpp as [BLANK_AUDIO], which is dropped
    assert result.text == "" and result.segments == ()


def test_close_twice_is_safe(settings: Settings, tiny_model: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "detect_gpu", lambda: (False, "patched"))
    engine = Transcriber(settings, "tiny.en")
    engine.close()
    engine.close()
    with pytest.raises(RuntimeError):
        engine.transcribe_sync(np.zeros(16_000, dtype=np.float32))


@pytest.mark.gpu
def test_gpu_xrt(settings: Settings, jfk: Audio) -> None:
    usable, why = device.detect_gpu()
    if not usable:
        pytest.skip(f"no usable GPU: {why}")
    with Transcriber(settings, "tiny.en", route=device.choose_route(settings.asr, gpu=True)) as engine:
        engine.warm_up()
        result = engine.transcribe_sync(jfk.samples)
    assert result.device == "gpu"
    assert result.xrt <= 0.5
    assert REGISTRY.get_sample_value("whisper_xrt", {"device": "gpu", "model": "tiny.en"}) == result.xrt
