"""Device routing: CPU fallback with B_cpu = max(1, floor(B_gpu / 4)), exposed as labels."""

from __future__ import annotations

import pytest

from wavegraph.metrics import REGISTRY
from wavegraph.processors.asr import device
from wavegraph.processors.asr.device import build_has_cuda, choose_route, cpu_batch_size
from wavegraph.settings import AsrSettings


def _route_value(device_label: str, batch: int) -> float | None:
    return REGISTRY.get_sample_value(
        "wavegraph_asr_route_info", {"device": device_label, "batch_size": str(batch)}
    )


@pytest.mark.parametrize(
    ("b_gpu", "b_cpu"), [(1, 1), (3, 1), (4, 1), (7, 1), (8, 2), (9, 2), (16, 4), (33, 8)]
)
def test_cpu_batch_formula(b_gpu: int, b_cpu: int) -> None:
    assert cpu_batch_size(b_gpu) == b_cpu


def test_no_gpu_routes_to_cpu_with_reduced_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "detect_gpu", lambda: (False, "patched"))
    route = choose_route(AsrSettings(batch_gpu=8))
    assert (route.device, route.batch_size) == ("cpu", 2)
    assert _route_value("cpu", 2) == 1.0
    route = choose_route(AsrSettings(batch_gpu=12))
    assert route.batch_size == 3
    assert _route_value("cpu", 3) == 1.0 and _route_value("cpu", 2) is None  # only the current route


def test_gpu_keeps_the_full_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "detect_gpu", lambda: (True, "patched"))
    route = choose_route(AsrSettings(batch_gpu=8))
    assert (route.device, route.batch_size) == ("gpu", 8)
    assert _route_value("gpu", 8) == 1.0


def test_route_is_logged_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(device, "detect_gpu", lambda: (False, "patched once"))
    monkeypatch.setattr(device, "_logged", set())
    caplog.set_level("INFO", logger=device.__name__)
    for _ in range(3):
        choose_route(AsrSettings(batch_gpu=20))
    assert [r.getMessage() for r in caplog.records].count(
        "ASR route: cpu, batch size 5 (B_gpu=20) — patched once"
    ) == 1


@pytest.mark.parametrize(
    ("info", "cuda"),
    [
        ("WHISPER : COREML = 0 | OPENVINO = 0 | CPU : SSE3 = 1 | AVX2 = 1 | OPENMP = 1 |", False),
        ("WHISPER : COREML = 0 | CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : AVX2 = 1 |", True),
        ("AVX = 1 | CUDA = 1 | BLAS = 1", True),
        ("AVX = 1 | CUDA = 0 | BLAS = 0", False),
    ],
)
def test_build_has_cuda_reads_system_info(info: str, cuda: bool) -> None:
    assert build_has_cuda(info) is cuda


def test_detect_gpu_needs_both_a_cuda_build_and_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "whisper_system_info", lambda: "CPU : AVX2 = 1 |")
    monkeypatch.setattr(device, "torch_cuda_available", lambda: True)
    assert device.detect_gpu() == (False, "pywhispercpp's whisper.cpp was built without CUDA")
    monkeypatch.setattr(device, "whisper_system_info", lambda: "CUDA : ARCHS = 890 |")
    monkeypatch.setattr(device, "torch_cuda_available", lambda: False)
    assert device.detect_gpu()[0] is False
    monkeypatch.setattr(device, "torch_cuda_available", lambda: True)
    assert device.detect_gpu()[0] is True


def test_system_info_comes_from_the_installed_build() -> None:
    assert "CPU" in device.whisper_system_info()
