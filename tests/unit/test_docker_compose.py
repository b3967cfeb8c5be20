"""docker-compose.yml describes the same services, on the same ports, as ``wavegraph services``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from wavegraph.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _compose() -> dict[str, dict[str, object]]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data["services"]


def _published(service: dict[str, object]) -> dict[int, int]:
    """host port -> container port, asserting every port is bound to 127.0.0.1 only."""
    ports: dict[int, int] = {}
    for spec in service.get("ports", []):  # type: ignore[attr-defined]
        host_ip, host, container = str(spec).split(":")
        assert host_ip == "127.0.0.1", spec
        ports[int(host)] = int(container)
    return ports


def test_services_and_images() -> None:
    images = {name: str(svc["image"]) for name, svc in _compose().items()}
    assert set(images) == {"kafka", "neo4j", "postgres", "redis", "prometheus", "grafana"}
    defaults = Settings()
    assert images["kafka"] == f"apache/kafka:{defaults.kafka.version}"
    assert images["neo4j"].startswith("neo4j:5.26") and images["neo4j"].endswith("-community")
    assert images["postgres"] == f"pgvector/pgvector:pg{defaults.postgres.version}"
    assert images["redis"].startswith("redis:")


def test_ports_match_the_settings() -> None:
    services = _compose()
    defaults = Settings()
    assert _published(services["kafka"])[defaults.kafka.port] == 9092
    assert _published(services["neo4j"])[defaults.neo4j.bolt_port] == 7687
    assert _published(services["postgres"])[defaults.postgres.port] == 5432
    assert _published(services["redis"])[defaults.redis.port] == 6379
    env = services["kafka"]["environment"]
    assert isinstance(env, dict)
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{defaults.kafka.bootstrap}"
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) == defaults.kafka.max_message_bytes
    assert int(env["KAFKA_NUM_PARTITIONS"]) == defaults.kafka.partitions


def test_compose_accepts_the_file() -> None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        argv = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        argv = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run([*argv, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
