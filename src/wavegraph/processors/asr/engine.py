"""The transcription engine: a pool of worker threads, one pywhispercpp Model per thread.

``await transcriber.transcribe(samples)`` runs inference in the pool (whisper.cpp releases the GIL),
so an asyncio processor keeps serving its event loop meanwhile. Decoding is greedy, English, with
``settings.asr.threads`` threads per model. Each call reports processing time and the real-time
factor ``xrt = processing time / audio time`` and updates ``whisper_xrt``, ``whisper_xrt_ratio`` and
``wavegraph_audio_seconds_total`` for its device and model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from wavegraph.errors import InvalidEvent
from wavegraph.metrics import AUDIO_SECONDS, WHISPER_XRT, WHISPER_XRT_HIST
from wavegraph.processors.asr.audio import TARGET_RATE
from wavegraph.processors.asr.device import Route, choose_route
from wavegraph.processors.asr.errors import corrupt_model
from wavegraph.processors.asr.ggml_convert import Progress
from wavegraph.processors.asr.models import VerifiedModel, ensure_model
from wavegraph.settings import Settings

log = logging.getLogger(__name__)
_whisper_log = logging.getLogger("wavegraph.asr.whispercpp")

NON_SPEECH = frozenset({"[BLANK_AUDIO]"})
"""Segment texts whisper.cpp emits for silence; dropped from transcripts."""

_LOG_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_bridge_lock = threading.Lock()
_bridge_installed = False


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: tuple[Segment, ...]
    model: str
    device: str
    start_s: float
    """Absolute start of the audio in its stream; segment times include it."""
    audio_s: float
    processing_ms: float
    xrt: float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = [asdict(s) for s in self.segments]
        return data


def _whisper_log_callback(level: int, text: str) -> None:
    try:
        message = text.rstrip()
        if message:
            _whisper_log.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", message)
    except Exception:  # an exception here would cross back into C++
        pass


def install_log_bridge() -> None:
    """Send whisper.cpp's stderr chatter to the ``wavegraph.asr.whispercpp`` logger (DEBUG) instead,
    and quiet pywhispercpp's per-call INFO lines unless its logger was configured."""
    global _bridge_installed
    with _bridge_lock:
        if not _bridge_installed:
            import _pywhispercpp

            _pywhispercpp.whisper_log_set(_whisper_log_callback)
            chatty = logging.getLogger("pywhispercpp")  # two INFO lines per window otherwise
            if chatty.level == logging.NOTSET:
                chatty.setLevel(logging.WARNING)
            _bridge_installed = True


def check_samples(samples: np.ndarray) -> np.ndarray:
    """Refuse what whisper.cpp would silently mistranscribe: non-float32, multi-dim, non-finite, empty."""
    if not isinstance(samples, np.ndarray) or samples.dtype != np.float32:
        kind = samples.dtype if isinstance(samples, np.ndarray) else type(samples).__name__
        raise TypeError(
            f"samples must be a float32 numpy array in [-1, 1] at 16 kHz, got {kind}; "
            "decode with wavegraph.processors.asr.audio first"
        )
    if samples.ndim != 1:
        raise TypeError(f"samples must be mono (1-d), got shape {samples.shape}")
    if samples.size == 0:
        raise InvalidEvent("audio: zero-length audio (no samples)")
    if not np.isfinite(samples).all():
        raise InvalidEvent("audio: samples contain NaN or infinity")
    return np.ascontiguousarray(samples)


class Transcriber:
    """Whisper over a thread pool; construct once per process and share.

    Construction verifies (and on first use converts) the model, picks the device route, and starts
    no thread yet: each worker thread loads its own Model on its first job (see :meth:`warm_up`).
    """

    def __init__(
        self,
        settings: Settings,
        model: str | None = None,
        *,
        route: Route | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.model = model or settings.asr.model
        self.route = route or choose_route(settings.asr)
        self.threads = settings.asr.threads
        self.workers = settings.asr.workers
        self.verified: VerifiedModel = ensure_model(settings, self.model, progress)
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="wavegraph-asr")
        self._closed = False
        install_log_bridge()
        cores = os.cpu_count() or 1
        if self.threads * self.workers > cores:
            log.warning(
                "asr.threads × asr.workers = %d exceeds the %d CPU cores: whisper.cpp's spinning "
                "barriers slow down sharply when oversubscribed",
                self.threads * self.workers,
                cores,
            )

    @property
    def model_path(self) -> Path:
        return self.verified.path

    @property
    def device(self) -> str:
        return self.route.device

    @property
    def batch_size(self) -> int:
        """How many windows a caller should keep in flight (from the device route)."""
        return self.route.batch_size

    async def transcribe(self, samples: np.ndarray, *, start_s: float = 0.0) -> Transcript:
        """Transcribe mono float32 16 kHz ``samples`` in the pool without blocking the event loop.

        Cancelling the awaiting task does not stop a window already being decoded; it finishes in its
        thread and its result is dropped.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, samples, start_s)

    def transcribe_sync(self, samples: np.ndarray, *, start_s: float = 0.0) -> Transcript:
        """Blocking form of :meth:`transcribe` (for the CLI and benchmarks), also run in the pool."""
        return self._executor.submit(self._run, samples, start_s).result()

    def warm_up(self, timeout_s: float = 60.0) -> float:
        """Load the model in every worker thread now; returns the seconds it took."""
        started = time.perf_counter()
        barrier = threading.Barrier(self.workers, timeout=timeout_s)

        def load() -> None:
            self._thread_model()
            barrier.wait()

        for future in [self._executor.submit(load) for _ in range(self.workers)]:
            future.result()
        return time.perf_counter() - started

    def close(self) -> None:
        """Stop taking work, finish the window in progress and free the models. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Transcriber:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _thread_model(self) -> Any:
        model = getattr(self._local, "model", None)
        if model is None:
            from pywhispercpp.model import Model

            path = self.verified.path
            if not path.is_file():  # pywhispercpp would try a hub download, then crash
                raise corrupt_model(path, self.model, f"{path} disappeared after it was verified")
            model = Model(
                str(path),
                params_sampling_strategy=0,
                redirect_whispercpp_logs_to=False,
                context_params={"use_gpu": self.route.device == "gpu"},
                n_threads=self.threads,
                language="en",
                translate=False,
                no_context=True,
                print_progress=False,
                print_realtime=False,
                print_timestamps=False,
            )
            self._local.model = model
            log.debug("loaded Whisper %s in thread %s", self.model, threading.current_thread().name)
        return model

    def _run(self, samples: np.ndarray, start_s: float) -> Transcript:
        audio = check_samples(samples)
        model = self._thread_model()
        started = time.perf_counter()
        raw = model.transcribe(audio)
        elapsed = time.perf_counter() - started
        audio_s = audio.size / TARGET_RATE
        segments = tuple(
            Segment(start_s + seg.t0 / 100.0, start_s + seg.t1 / 100.0, seg.text.strip())
            for seg in raw
            if seg.text.strip() and seg.text.strip() not in NON_SPEECH
        )
        xrt = elapsed / audio_s
        labels = {"device": self.route.device, "model": self.model}
        WHISPER_XRT.labels(**labels).set(xrt)
        WHISPER_XRT_HIST.labels(**labels).observe(xrt)
        AUDIO_SECONDS.labels(**labels).inc(audio_s)
        return Transcript(
            text=" ".join(s.text for s in segments),
            segments=segments,
            model=self.model,
            device=self.route.device,
            start_s=start_s,
            audio_s=audio_s,
            processing_ms=elapsed * 1000.0,
            xrt=xrt,
        )
