"""``/ui/explain`` in headless Chromium (Debian ``chromium``) against the app served by uvicorn.

The page must load its libraries from the app (no network beyond 127.0.0.1), fetch ``/v1/explain``
with the key from the URL fragment and draw both Plot charts. Chromium is run twice (``--dump-dom``,
then ``--screenshot``); the test fails on any console error, an error shown by the page, or an empty
plot (no link or dot drawn).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from test_explain import Tenant, les_miserables, store_graph, tenants, with_keys  # noqa: F401

from wavegraph.http import create_app
from wavegraph.settings import Settings

pytestmark = pytest.mark.services

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",
    "--window-size=1200,900",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def served(services: Settings, tenants: list[Tenant]) -> AsyncIterator[str]:  # noqa: F811
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(with_keys(services, tenants)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def chromium(url: str, *extra: str) -> tuple[str, str]:
    assert CHROMIUM, "Debian chromium is needed for the page tests: apt-get install -y chromium"
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            *extra,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace"), err.decode(errors="replace")


def console_errors(stderr: str) -> list[str]:
    """Console messages and uncaught errors Chromium logged for the page (its own noise is ignored)."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


async def test_the_page_draws_the_explanation_without_console_errors(
    services: Settings,
    tenants: list[Tenant],  # noqa: F811
    served: str,
    tmp_path: Path,
) -> None:
    await store_graph(services, tenants[0].name, les_miserables())
    url = f"{served}/ui/explain?node=Valjean&hops=2&limit=60#key={tenants[0].key}"
    dom, stderr = await chromium(url, "--dump-dom")
    assert console_errors(stderr) == []
    assert 'data-status="ok"' in dom, dom[-3000:]
    graph = re.search(r'<svg[^>]*id="graph-plot".*?</svg>', dom, re.S)
    bars = re.search(r'<svg[^>]*id="bars-plot".*?</svg>', dom, re.S)
    assert graph and bars, "both plots are drawn"
    assert graph.group(0).count("<circle") == 61  # the explained node + 60 others
    assert graph.group(0).count("<path") + graph.group(0).count("<line") > 60  # links drawn
    assert bars.group(0).count("<rect") >= 36  # one bar per neighbour of Valjean
    assert "Javert" in graph.group(0)
    shot = tmp_path / "explain.png"
    _, stderr = await chromium(url, f"--screenshot={shot}")
    assert console_errors(stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


async def test_the_page_shows_the_apis_error_for_an_unknown_node(
    tenants: list[Tenant],  # noqa: F811
    served: str,
) -> None:
    dom, _ = await chromium(f"{served}/ui/explain?node=nobody#key={tenants[0].key}", "--dump-dom")
    assert 'data-status="error"' in dom and "404 unknown_node" in dom


async def test_the_vendored_libraries_are_served_by_the_app(served: str) -> None:
    dom, stderr = await chromium(f"{served}/ui/explain", "--dump-dom")
    assert 'data-status="idle"' in dom  # no key, no node: the form, and Plot loaded without errors
    assert console_errors(stderr) == []
