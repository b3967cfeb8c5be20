"""docker-compose.yml describes the same services, on the same ports, as ``wavegraph services``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from wavegraph.devservices.kafka import with_brokers
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
    assert set(images) == {
        "kafka",
        "kafka-2",
        "kafka-3",
        "neo4j",
        "postgres",
        "redis",
        "prometheus",
        "grafana",
    }
    defaults = Settings()
    assert (
        images["kafka"] == images["kafka-2"] == images["kafka-3"] == f"apache/kafka:{defaults.kafka.version}"
    )
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
    assert str(env["KAFKA_ADVERTISED_LISTENERS"]).split(",")[0] == f"PLAINTEXT://{defaults.kafka.bootstrap}"
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) == defaults.kafka.max_message_bytes
    assert int(env["KAFKA_NUM_PARTITIONS"]) == defaults.kafka.partitions


def test_the_cluster_profile_adds_two_brokers_on_the_settings_port_scheme() -> None:
    """``--profile cluster`` starts kafka-2 and kafka-3 on the ports ``kafka.brokers: 3`` uses, in the
    quorum of ``kafka`` (same cluster id), replicating over the INTERNAL listener; without the profile
    only ``kafka`` runs, and it stays the broker of a single-broker setup."""
    services = _compose()
    three = with_brokers(Settings(), 3).kafka
    assert [services[n].get("profiles") for n in ("kafka", "kafka-2", "kafka-3")] == [
        None,
        ["cluster"],
        ["cluster"],
    ]
    envs = [services[n]["environment"] for n in ("kafka", "kafka-2", "kafka-3")]
    assert all(isinstance(env, dict) for env in envs)
    advertised = [str(env["KAFKA_ADVERTISED_LISTENERS"]).split(",") for env in envs]  # type: ignore[index]
    assert [a[0] for a in advertised] == [f"PLAINTEXT://{b}" for b in three.bootstrap.split(",")]
    assert [a[1] for a in advertised] == [
        "INTERNAL://kafka:19092",
        "INTERNAL://kafka-2:19092",
        "INTERNAL://kafka-3:19092",
    ]
    for name, port in zip(("kafka", "kafka-2", "kafka-3"), three.broker_ports, strict=True):
        assert _published(services[name]) == {port: port}, name
    assert [env["KAFKA_NODE_ID"] for env in envs] == ["1", "2", "3"]  # type: ignore[index]
    assert [env["KAFKA_PROCESS_ROLES"] for env in envs] == ["broker,controller", "broker", "broker"]  # type: ignore[index]
    assert {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs[1:]} == {"1@kafka:9093"}  # type: ignore[index]
    assert "CONTROLLER://:9093" in str(envs[0]["KAFKA_LISTENERS"])  # type: ignore[index]
    assert len({env["CLUSTER_ID"] for env in envs}) == 1  # type: ignore[index]
    for env in envs:
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"  # type: ignore[index]
        assert "INTERNAL://:19092" in str(env["KAFKA_LISTENERS"])  # type: ignore[index]
        assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) == three.max_message_bytes  # type: ignore[index]
    assert {"kafka-2-data", "kafka-3-data"} <= set(yaml.safe_load(COMPOSE.read_text())["volumes"])


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
