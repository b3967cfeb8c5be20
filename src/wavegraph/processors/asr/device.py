"""Device routing for Whisper: a GPU when one is usable, otherwise the CPU with a smaller batch.

A GPU is usable iff the whisper.cpp inside pywhispercpp was built with CUDA (its system-info string
names a CUDA backend) **and** ``torch.cuda.is_available()`` (when torch is installed). On CPU the batch
shrinks to ``B_cpu = max(1, floor(B_gpu / 4))``. The batch size is how many windows a processor keeps
in flight at once. Tests patch :func:`detect_gpu`.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Literal

from wavegraph.metrics import ASR_ROUTE
from wavegraph.settings import AsrSettings

log = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]

_CUDA_IN_INFO = re.compile(r"\bCUDA\s*(?:=\s*1\b|:)")


@dataclass(frozen=True)
class Route:
    device: Device
    batch_size: int
    reason: str


_logged: set[Route] = set()
_lock = threading.Lock()


def cpu_batch_size(batch_gpu: int) -> int:
    """``max(1, floor(batch_gpu / 4))``."""
    return max(1, batch_gpu // 4)


def whisper_system_info() -> str:
    """whisper.cpp's ``whisper_print_system_info()`` string for the installed pywhispercpp."""
    import _pywhispercpp

    return str(_pywhispercpp.whisper_print_system_info())


def build_has_cuda(system_info: str) -> bool:
    """Whether a whisper.cpp system-info string shows a CUDA backend (``CUDA : ...`` or ``CUDA = 1``)."""
    return _CUDA_IN_INFO.search(system_info) is not None


def torch_cuda_available() -> bool:
    """``torch.cuda.is_available()``, False when torch is not installed or fails to initialise."""
    if importlib.util.find_spec("torch") is None:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch

            return bool(torch.cuda.is_available())
    except Exception:
        return False


def detect_gpu() -> tuple[bool, str]:
    """(usable, why). Checks the whisper.cpp build first so torch is imported only when it matters."""
    if not build_has_cuda(whisper_system_info()):
        return False, "pywhispercpp's whisper.cpp was built without CUDA"
    if not torch_cuda_available():
        return False, "torch is missing or sees no CUDA device"
    return True, "CUDA build of whisper.cpp and a CUDA device"


def choose_route(asr: AsrSettings, *, gpu: bool | None = None) -> Route:
    """Pick the device and batch size, log the choice once and expose it as ``ASR_ROUTE`` labels.

    ``gpu`` overrides detection (None: call :func:`detect_gpu`).
    """
    usable, reason = detect_gpu() if gpu is None else (gpu, "set by the caller")
    if usable:
        route = Route("gpu", asr.batch_gpu, reason)
    else:
        route = Route("cpu", cpu_batch_size(asr.batch_gpu), reason)
    with _lock:
        ASR_ROUTE.clear()
        ASR_ROUTE.labels(device=route.device, batch_size=str(route.batch_size)).set(1)
        if route not in _logged:
            _logged.add(route)
            log.info(
                "ASR route: %s, batch size %d (B_gpu=%d) — %s",
                route.device,
                route.batch_size,
                asr.batch_gpu,
                route.reason,
            )
    return route
