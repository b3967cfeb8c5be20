"""``wavegraph services`` against real servers, in a private state dir on free ports.

The shared services other tests use (default ports, ``.wavegraph/``) are never touched here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wavegraph.commands.services import app
from wavegraph.devservices import process
from wavegraph.devservices.ephemeral import ephemeral, isolated_settings
from wavegraph.devservices.manager import ServiceManager, service
from wavegraph.errors import MissingPrerequisite
from wavegraph.settings import Settings

ROUND_TRIP = ("kafka", "redis", "postgres")


def _env(s: Settings) -> dict[str, str]:
    """The environment that makes ``load_settings`` (hence the CLI) point at ``s``'s instances."""
    return {
        "WAVEGRAPH_SERVICES__STATE_DIR": str(s.services.state_dir),
        "WAVEGRAPH_SERVICES__ENABLED": "[" + ", ".join(ROUND_TRIP) + "]",
        "WAVEGRAPH_KAFKA__PORT": str(s.kafka.port),
        "WAVEGRAPH_KAFKA__CONTROLLER_PORT": str(s.kafka.controller_port),
        "WAVEGRAPH_POSTGRES__PORT": str(s.postgres.port),
        "WAVEGRAPH_REDIS__PORT": str(s.redis.port),
    }


@pytest.mark.services
def test_up_status_down_round_trip_survives_a_killed_kafka(settings: Settings, tmp_path: Path) -> None:
    scratch = isolated_settings(settings, tmp_path / "state", ROUND_TRIP)
    manager = ServiceManager(scratch)
    cli = CliRunner()
    try:
        first = asyncio.run(manager.up())
        assert [r.started for r in first] == [True, True, True]
        assert all(h.ok for h in asyncio.run(manager.status())), asyncio.run(manager.status())

        again = asyncio.run(manager.up())
        assert [r.started for r in again] == [False, False, False]
        assert [r.pid for r in again] == [r.pid for r in first]

        result = cli.invoke(app, ["status", "--json"], env=_env(scratch))
        assert result.exit_code == 0, result.output
        answers = json.loads(result.output)
        assert set(answers) == set(ROUND_TRIP)
        assert answers["kafka"]["ok"] and answers["kafka"]["port"] == scratch.kafka.port
        assert answers["postgres"]["detail"].count("vector") == 1

        kafka = service(scratch, "kafka")
        pid = kafka.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process.pid_alive(pid)
        assert cli.invoke(app, ["status"], env=_env(scratch)).exit_code == 1

        down = {r.name: r for r in asyncio.run(manager.down())}
        assert not down["kafka"].was_running
        assert down["redis"].was_running and down["postgres"].was_running
        for s in manager.services():
            assert not s.pid_file.exists(), s.pid_file
            assert not process.port_open(s.host, s.port), s.name
        assert not (kafka.state_dir / "data" / ".lock").exists()

        revived = asyncio.run(manager.up())
        assert [r.started for r in revived] == [True, True, True]
        assert all(h.ok for h in asyncio.run(manager.status()))
    finally:
        asyncio.run(manager.down())
    assert not any(h.ok for h in asyncio.run(manager.status()))


@pytest.mark.parametrize(
    ("name", "program", "package"),
    [("kafka", "java", "openjdk-17-jre-headless"), ("redis", "redis-server", "redis-server")],
)
def test_a_missing_program_names_its_package(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, program: str, package: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    scratch = isolated_settings(settings, tmp_path / "state", [name])
    with pytest.raises(MissingPrerequisite, match=package) as caught:
        asyncio.run(ServiceManager(scratch).up())
    assert f"`{program}`" in str(caught.value)
    assert not (tmp_path / "state" / name / f"{name}.pid").exists()


@pytest.mark.services
async def test_ephemeral_postgres_is_private_and_removed(settings: Settings, tmp_path: Path) -> None:
    import asyncpg

    async with ephemeral(settings, "postgres", parent=tmp_path) as scratch:
        assert scratch.postgres.port != settings.postgres.port
        state_dir = scratch.services.state_dir
        assert state_dir.parent == tmp_path
        conn = await asyncpg.connect(scratch.postgres.url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 1
        finally:
            await conn.close()
    assert not state_dir.exists()
    assert not process.port_open(scratch.postgres.host, scratch.postgres.port)
