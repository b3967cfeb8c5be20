"""Session fixtures shared by the ASR tests: one converted model, one CPU transcriber, test speech."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wavegraph.processors.asr import device
from wavegraph.processors.asr.audio import Audio, load_audio_file
from wavegraph.processors.asr.engine import Transcriber, Transcript
from wavegraph.processors.asr.models import VerifiedModel, ensure_model
from wavegraph.processors.asr.samples import SPEECH_TEXTS, Speech, espeak_speech, jfk_wav
from wavegraph.settings import Settings


@pytest.fixture(scope="session")
def tiny_model(settings: Settings) -> VerifiedModel:
    """tiny.en converted once into the cache dir (later sessions only verify it)."""
    return ensure_model(settings, "tiny.en")


def one_thread(settings: Settings) -> Settings:
    """whisper.cpp's spinning barriers make 2 threads 2-3x slower than 1 on a busy 2-core machine."""
    return settings.model_copy(update={"asr": settings.asr.model_copy(update={"threads": 1})})


@pytest.fixture(scope="session")
def transcriber(settings: Settings, tiny_model: VerifiedModel) -> Iterator[Transcriber]:
    """A tiny.en transcriber built with GPU detection patched to False."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(device, "detect_gpu", lambda: (False, "patched for tests"))
        engine = Transcriber(one_thread(settings), "tiny.en")
    with engine:
        yield engine


@pytest.fixture(scope="session")
def jfk(settings: Settings) -> Audio:
    return load_audio_file(jfk_wav(settings), max_s=settings.asr.max_stream_s)


@pytest.fixture(scope="session")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """espeak-ng reading a known text of ~36 s: longer than one 30 s window."""
    return espeak_speech(SPEECH_TEXTS["library"], tmp_path_factory.mktemp("speech") / "library.wav")


@pytest.fixture(scope="session")
def long_speech_whole(transcriber: Transcriber, long_speech: Speech) -> Transcript:
    """The long speech transcribed as one file (shared by the WER and chunking tests)."""
    return transcriber.transcribe_sync(long_speech.audio.samples)
