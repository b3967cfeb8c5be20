"""Offline speech recognition: Whisper weights from registry packages, converted to ggml and run by
whisper.cpp (pywhispercpp) in a thread pool, with device routing, windowing and xRT metrics.

Modules: :mod:`.models` (registry, conversion cache, checksums), :mod:`.audio` (decode and validate),
:mod:`.device` (CPU/GPU route), :mod:`.engine` (``Transcriber``), :mod:`.windows` (chunk → window
assembly), :mod:`.wer`, :mod:`.samples` (test speech), :mod:`.ct2` and :mod:`.ggml_convert` (format code).
"""

from wavegraph.errors import ModelCorrupt
from wavegraph.processors.asr.audio import (
    Audio,
    decode_audio,
    decode_pcm_s16le,
    decode_wav,
    from_float,
    load_audio_file,
)
from wavegraph.processors.asr.device import Route, choose_route
from wavegraph.processors.asr.engine import Segment, Transcriber, Transcript
from wavegraph.processors.asr.errors import ModelMissing
from wavegraph.processors.asr.models import MODELS, ensure_model, prepare_model, verify_model
from wavegraph.processors.asr.windows import Window, WindowAssembler

__all__ = [
    "MODELS",
    "Audio",
    "ModelCorrupt",
    "ModelMissing",
    "Route",
    "Segment",
    "Transcriber",
    "Transcript",
    "Window",
    "WindowAssembler",
    "choose_route",
    "decode_audio",
    "decode_pcm_s16le",
    "decode_wav",
    "ensure_model",
    "from_float",
    "load_audio_file",
    "prepare_model",
    "verify_model",
]
