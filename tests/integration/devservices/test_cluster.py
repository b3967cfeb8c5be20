"""``wavegraph services up --brokers 3``: a real 3-broker KRaft cluster in a private state dir.

The cluster runs on a block of free ports (broker i on ``port + 10 * i``), never on the shared broker's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from wavegraph.commands.services import app
from wavegraph.devservices import process
from wavegraph.devservices.base import ServiceError
from wavegraph.devservices.ephemeral import isolated_settings
from wavegraph.devservices.kafka import Kafka, brokers, with_brokers
from wavegraph.errors import ConfigError
from wavegraph.loadtest.scope import wait_for_leaders
from wavegraph.settings import KafkaSettings, Settings
from wavegraph.streams.topics import ensure_topics

NAMES = ("kafka", "kafka-2", "kafka-3")


def test_the_port_scheme_bootstrap_and_derived_replication() -> None:
    one = KafkaSettings()
    assert (one.bootstrap, one.replication()) == ("127.0.0.1:9092", (1, 1))
    three = KafkaSettings(brokers=3)
    assert three.broker_ports == (9092, 9102, 9112) and three.controller_ports == (9093, 9103, 9113)
    assert three.bootstrap == "127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112"
    assert [three.replication(n) for n in (1, 2, 3, 5)] == [(1, 1), (2, 2), (3, 2), (3, 2)]
    assert KafkaSettings(brokers=3, replication_factor=1).replication() == (1, 1)
    assert KafkaSettings(min_insync_replicas=1).replication(3) == (3, 1)
    with pytest.raises(ValueError, match="exceeds the replication factor"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ValueError, match="overlapping"):
        KafkaSettings(brokers=2, broker_port_step=1)  # broker 2 would listen on broker 1's controller port
    with pytest.raises(ConfigError, match=r"kafka\.brokers 3"):
        with_brokers(Settings(kafka=KafkaSettings(broker_port_step=1)), 3)


def test_each_broker_has_its_own_ports_dirs_and_a_shared_quorum(tmp_path: Path) -> None:
    s = with_brokers(Settings(), 3)
    s = s.model_copy(update={"services": s.services.model_copy(update={"state_dir": tmp_path})})
    cluster = brokers(s)
    assert [b.name for b in cluster] == list(NAMES)
    assert [(b.port, b.controller_port) for b in cluster] == [(9092, 9093), (9102, 9103), (9112, 9113)]
    assert [b.state_dir for b in cluster] == [tmp_path / n for n in NAMES]
    assert {b.data_dir.name for b in cluster} == {"data-3brokers"}  # never the single broker's data/
    assert len({b.cluster_id() for b in cluster}) == 1
    assert Kafka(s, 0, 1).data_dir == tmp_path / "kafka" / "data"
    props = [dict(ln.split("=", 1) for ln in b.server_properties().splitlines()) for b in cluster]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in props} == {
        "1@127.0.0.1:9093,2@127.0.0.1:9103,3@127.0.0.1:9113"
    }
    assert {(p["default.replication.factor"], p["min.insync.replicas"]) for p in props} == {("3", "2")}
    assert {p["offsets.topic.replication.factor"] for p in props} == {"3"}
    # ``…/kafka`` is a prefix of ``…/kafka-2``: broker 1 must not take broker 2's process for its own
    assert not cluster[0]._owns(f"java -cp x kafka.Kafka {tmp_path}/kafka-2/server.properties")
    assert cluster[1]._owns(f"java -cp x kafka.Kafka {tmp_path}/kafka-2/server.properties")


def _env(s: Settings) -> dict[str, str]:
    """Settings of one broker (the default size) on ``s``'s ports and state dir: the cluster's size comes
    from ``--brokers`` and, once it runs, from what ``up`` recorded."""
    return {
        "WAVEGRAPH_SERVICES__STATE_DIR": str(s.services.state_dir),
        "WAVEGRAPH_SERVICES__ENABLED": "[kafka]",
        "WAVEGRAPH_KAFKA__PORT": str(s.kafka.port),
        "WAVEGRAPH_KAFKA__CONTROLLER_PORT": str(s.kafka.controller_port),
        "WAVEGRAPH_KAFKA__HEAP": "256m",
    }


async def _replication(kafka: KafkaSettings, topic: str) -> tuple[list[list[int]], list[list[int]], str]:
    await wait_for_leaders(kafka, [topic], 3)  # a broker that has not seen the new topic lists nothing
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        for _ in range(50):  # the broker the admin asks may not have the new topic's metadata yet
            (described,) = await admin.describe_topics([topic])
            parts = sorted(described["partitions"], key=lambda p: p["partition"])
            if len(parts) == 3:
                break
            await asyncio.sleep(0.2)
        for _ in range(50):  # the same for configs: "unknown topic" until it has
            (configs,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            error_code, *_, entries = configs.resources[0]
            if error_code == 0:
                break
            await asyncio.sleep(0.2)
        values = {entry[0]: entry[1] for entry in entries}
        return [p["replicas"] for p in parts], [p["isr"] for p in parts], values["min.insync.replicas"]
    finally:
        await admin.close()


@pytest.mark.services
def test_up_brokers_3_status_shows_every_broker_and_down_stops_them(
    settings: Settings, tmp_path: Path
) -> None:
    scratch = isolated_settings(with_brokers(settings, 3), tmp_path / "state", ["kafka"])
    ports = scratch.kafka.broker_ports
    env = _env(scratch)
    cli = CliRunner()
    try:
        up = cli.invoke(app, ["up", "--brokers", "3"], env=env)
        assert up.exit_code == 0, up.output
        status = cli.invoke(app, ["status", "--json"], env=env)  # the settings still say one broker
        assert status.exit_code == 0, status.output
        answers = json.loads(status.output)
        assert list(answers) == list(NAMES)
        assert [answers[n]["port"] for n in NAMES] == list(ports)
        for i, name in enumerate(NAMES):
            assert answers[name]["ok"], answers[name]
            assert answers[name]["detail"] == f"node {i + 1}: metadata ok, brokers [1, 2, 3]"
        pids = [answers[n]["pid"] for n in NAMES]
        assert len(set(pids)) == 3 and all(pids)

        # topics made through broker 1 alone with one-broker settings: the metadata's 3 brokers count
        one_broker = scratch.kafka.model_copy(update={"brokers": 1})
        topic = "cluster-test.replicated"
        assert asyncio.run(ensure_topics(one_broker, [topic], partitions=3)) == [topic]
        replicas, isr, min_isr = asyncio.run(_replication(scratch.kafka, topic))
        assert [sorted(r) for r in replicas] == [[1, 2, 3]] * 3
        assert [sorted(r) for r in isr] == [[1, 2, 3]] * 3
        assert min_isr == "2"
        assert {r[0] for r in replicas} == {1, 2, 3}  # leadership spread over the brokers

        # another size is refused before anything is touched: the running cluster stays as it was
        single = cli.invoke(app, ["up"], env=env)
        assert single.exit_code != 0
        assert isinstance(single.exception, ServiceError)
        assert "a 3-broker Kafka is running" in str(single.exception)
        again = json.loads(cli.invoke(app, ["status", "--json"], env=env).output)
        assert [again[n]["pid"] for n in NAMES] == pids and all(again[n]["ok"] for n in NAMES)

        # a SIGKILLed broker: status fails on its row only; up restarts it alone, on its own log
        os.kill(pids[2], signal.SIGKILL)
        while process.pid_alive(pids[2]):
            time.sleep(0.05)
        broken = cli.invoke(app, ["status", "--json"], env=env)
        assert broken.exit_code == 1
        assert [json.loads(broken.output)[n]["ok"] for n in NAMES] == [True, True, False]
        revived = cli.invoke(app, ["up", "--brokers", "3"], env=env)
        assert revived.exit_code == 0, revived.output
        assert "already running" in revived.output and "started" in revived.output
        healed = json.loads(cli.invoke(app, ["status", "--json"], env=env).output)
        assert all(healed[n]["ok"] for n in NAMES)
        assert [healed[n]["pid"] for n in NAMES][:2] == pids[:2] and healed["kafka-3"]["pid"] != pids[2]
        pids = [healed[n]["pid"] for n in NAMES]

        down = cli.invoke(app, ["down"], env=env)
        assert down.exit_code == 0, down.output
        for name in NAMES:
            assert f"{name}: stopped in" in down.output, down.output
        assert not any(process.port_open("127.0.0.1", p) for p in ports)
        assert not any(process.pid_alive(p) for p in pids)
    finally:
        cli.invoke(app, ["down", "--only", "kafka"], env=env)


def test_no_cluster_id_reads_as_a_command_line_option(tmp_path: Path) -> None:
    """One base64 id in 64 starts with "-": ``kafka-storage format -t -Xy…`` refused it and a CI run
    failed to start Kafka. Single-broker ids are drawn again, name-based ones are re-derived."""
    one = Kafka(Settings(), 0, 1)
    assert not [i for i in (one.cluster_id() for _ in range(3000)) if i.startswith("-")]
    for n in range(300):
        s = with_brokers(Settings(), 3)
        s = s.model_copy(update={"services": s.services.model_copy(update={"state_dir": tmp_path / str(n)})})
        assert not Kafka(s, 0).cluster_id().startswith("-")
