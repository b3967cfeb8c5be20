"""``wavegraph services`` against real servers, in a private state dir on free ports.

The shared services other tests use (default ports, ``.wavegraph/``) are never touched here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from wavegraph.commands.services import app
from wavegraph.devservices import process
from wavegraph.devservices.ephemeral import ephemeral, isolated_settings
from wavegraph.devservices.manager import ServiceManager, service
from wavegraph.errors import MissingPrerequisite
from wavegraph.settings import Settings

ROUND_TRIP = ("kafka", "redis", "postgres")
RULES = Path(__file__).parents[3] / "deploy" / "prometheus" / "rules.yml"


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
    [
        ("kafka", "java", "openjdk-17-jre-headless"),
        ("redis", "redis-server", "redis-server"),
        ("prometheus", "prometheus", "prometheus"),
    ],
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
            # the server keeps freed memory for reuse (settings.postgres.malloc_keep): glibc reads these
            # variables when the postmaster starts, and its backends are forks of it (a backend's own
            # /proc environ is overwritten by its process title)
            data_dir = service(scratch, "postgres").data_dir  # type: ignore[attr-defined]
            postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
            environ = Path(f"/proc/{postmaster}/environ").read_bytes().split(b"\0")
            keep = str(256 * 2**20).encode()
            assert b"MALLOC_TRIM_THRESHOLD_=" + keep in environ
            assert b"MALLOC_MMAP_THRESHOLD_=" + keep in environ
        finally:
            await conn.close()
    assert not state_dir.exists()
    assert not process.port_open(scratch.postgres.host, scratch.postgres.port)


@pytest.mark.services
def test_up_with_prometheus_scrapes_api_and_processors_and_down_stops_it(tmp_path: Path) -> None:
    """``up --with prometheus`` starts the optional service next to the enabled ones (here only Redis);
    ``status`` shows it although it is not enabled, ``down`` stops it, and then ``status`` forgets it."""
    ports = {name: process.free_port() for name in ("redis", "prometheus", "http", "edges", "audio")}
    env = {
        "WAVEGRAPH_SERVICES__STATE_DIR": str(tmp_path / "state"),
        "WAVEGRAPH_SERVICES__ENABLED": "[redis]",
        "WAVEGRAPH_REDIS__PORT": str(ports["redis"]),
        "WAVEGRAPH_PROMETHEUS__PORT": str(ports["prometheus"]),
        "WAVEGRAPH_PROMETHEUS__RULES_FILE": str(RULES),
        "WAVEGRAPH_HTTP__PORT": str(ports["http"]),
        "WAVEGRAPH_METRICS__EDGES_PORT": str(ports["edges"]),
        "WAVEGRAPH_METRICS__AUDIO_PORT": str(ports["audio"]),
        "WAVEGRAPH_METRICS__GRAPH_PORT": "0",
    }
    cli = CliRunner()
    try:
        result = cli.invoke(app, ["up", "--with", "prometheus"], env=env)
        assert result.exit_code == 0, result.output
        status = cli.invoke(app, ["status", "--json"], env=env)
        assert status.exit_code == 0, status.output
        answers = json.loads(status.output)
        assert set(answers) == {"redis", "prometheus"}
        assert answers["prometheus"]["ok"] and answers["prometheus"]["port"] == ports["prometheus"]
        assert re.fullmatch(r"ready, 0/[0-3] targets up", answers["prometheus"]["detail"])  # none runs

        config = yaml.safe_load((tmp_path / "state" / "prometheus" / "prometheus.yml").read_text())
        scraped = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
        assert scraped == {
            "wavegraph-api": [f"127.0.0.1:{ports['http']}"],
            "wavegraph-edges": [f"127.0.0.1:{ports['edges']}"],
            "wavegraph-audio": [f"127.0.0.1:{ports['audio']}"],
        }
        assert config["rule_files"] == [str(RULES)]
        rules = httpx.get(f"http://127.0.0.1:{ports['prometheus']}/api/v1/rules", timeout=10).json()
        loaded = {r["name"]: r["query"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert loaded["Neo4jBreakerOpen"] == "breaker_state == 1"

        down = cli.invoke(app, ["down"], env=env)
        assert down.exit_code == 0, down.output
        assert "prometheus: stopped" in down.output and "redis: stopped" in down.output
        assert not process.port_open("127.0.0.1", ports["prometheus"])
        after = cli.invoke(app, ["status", "--json"], env=env)
        assert after.exit_code == 1
        assert set(json.loads(after.output)) == {"redis"}
    finally:
        cli.invoke(app, ["down", "--only", "redis,prometheus"], env=env)
