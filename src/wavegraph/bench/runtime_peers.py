"""The peers of ``wavegraph bench runtime --peers``: Quix Streams and faust-streaming on the same topic.

Each peer runs in its own subprocess (``python -m wavegraph.bench.runtime_peers PEER ...``), because
both own their process: Quix Streams installs signal handlers and runs librdkafka threads, faust runs
its own event loop and worker. The child consumes the bench topic from the start as a fresh consumer
group named under the bench prefix, counts every event after decoding it the peer's usual way (Quix:
its JSON deserialiser and its own checkpointing; faust: its ``json`` codec, which is orjson when
installed, and its own commit timer), and prints one JSON line: the events counted after the first
one, the seconds between the first and the last, and the process CPU seconds in between (all threads).
The parent removes the topics a peer created (faust's assignor topic) and the consumer groups.

A peer whose package is not installed (``pip install 'wavegraph[peers]'``), or that fails or times
out here, becomes a row with a ``skipped`` note instead of numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

PEERS = {"quixstreams": "quixstreams", "faust": "faust"}  # case name → module that must be importable
INSTALL_HINT = "pip install 'wavegraph[peers]'"


def missing(peer: str) -> str | None:
    """Why ``peer`` cannot run (not installed), or None."""
    module = PEERS[peer]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed ({INSTALL_HINT})"
    return None


def version(peer: str) -> str | None:
    """The installed distribution's version, or None."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    dist = {"quixstreams": "quixstreams", "faust": "faust-streaming"}[peer]
    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return None


def run_peer(
    peer: str, bootstrap: str, topic: str, total: int, group: str, timeout_s: float
) -> dict[str, Any]:
    """Run ``peer`` in a subprocess over ``topic``; its measurement, or ``{"skipped": reason}``."""
    reason = missing(peer)
    if reason is not None:
        return {"skipped": reason}
    cmd = [sys.executable, "-m", "wavegraph.bench.runtime_peers", peer, bootstrap, topic, str(total), group]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"{peer} did not consume {total} events within {timeout_s:.0f} s"}
    # The last line holding the result (faust's spinner may leave terminal codes before it).
    lines = [line[line.index('{"events"') :] for line in done.stdout.splitlines() if '{"events"' in line]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"skipped": f"{peer} failed (exit {done.returncode}): {tail[0][:300]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class _Clock:
    """First and last event times, and the process CPU time at each."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = 0
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0

    def tick(self) -> bool:
        """Count one event; True when the last one arrived."""
        self.seen += 1
        if self.seen == 1:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        if self.seen == self.total:
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            return True
        return False

    def result(self) -> dict[str, Any]:
        events = self.total - 1
        seconds = self.t1 - self.t0
        return {
            "events": events,
            "seconds": round(seconds, 4),
            "events_per_s": round(events / max(seconds, 1e-9)),
            "cpu_s": round(self.c1 - self.c0, 4),
        }


def _quix(bootstrap: str, topic: str, total: int, group: str) -> dict[str, Any]:
    from quixstreams import Application

    clock = _Clock(total)
    with tempfile.TemporaryDirectory(prefix="wavegraph-bench-quix-") as state:
        app = Application(
            broker_address=bootstrap,
            consumer_group=group,
            auto_offset_reset="earliest",
            state_dir=state,
            loglevel="WARNING",
            auto_create_topics=False,  # the bench topic exists; nothing else is needed (no state)
        )
        sdf = app.dataframe(app.topic(topic, value_deserializer="json"))

        def count(value: Any) -> None:
            if clock.tick():
                app.stop()

        sdf.update(count)
        app.run()
    return clock.result()


def _faust(bootstrap: str, topic: str, total: int, group: str) -> dict[str, Any]:
    import faust

    clock = _Clock(total)
    with tempfile.TemporaryDirectory(prefix="wavegraph-bench-faust-") as datadir:
        app = faust.App(
            group,  # the app id is faust's consumer group and the prefix of the topics it creates
            broker=f"kafka://{bootstrap}",
            store="memory://",
            datadir=datadir,
            web_enabled=False,
            consumer_auto_offset_reset="earliest",
        )
        source = app.topic(topic, value_serializer="json")

        @app.agent(source)
        async def counter(stream: Any) -> None:
            async for _value in stream:
                if clock.tick():
                    # The measurement is taken; leave without faust's slow shutdown.
                    print(json.dumps(clock.result()), flush=True)
                    os._exit(0)

        worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
        worker.execute_from_commandline()
    return clock.result()  # pragma: no cover - the agent exits the process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("total", type=int)
    parser.add_argument("group")
    args = parser.parse_args(argv)
    run = {"quixstreams": _quix, "faust": _faust}[args.peer]
    print(json.dumps(run(args.bootstrap, args.topic, args.total, args.group)), flush=True)


async def cleanup(bootstrap: str, groups: list[str]) -> list[str]:
    """Delete the topics the peers created (named after their groups) and the groups; return the topics
    deleted."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if any(t.startswith(f"{g}-") for g in groups)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
    await asyncio.to_thread(_delete_groups, bootstrap, groups)
    return doomed


def _delete_groups(bootstrap: str, groups: list[str]) -> None:
    """Remove the bench's consumer groups (confluent-kafka, which Quix Streams brings, can; without it
    they expire with the broker's offsets retention)."""
    if not groups or importlib.util.find_spec("confluent_kafka") is None:
        return
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until its futures resolve
    futures = admin.delete_consumer_groups(groups, request_timeout=10)
    for future in futures.values():
        try:
            future.result(timeout=30)
        except Exception:  # a group that never committed does not exist: nothing to remove
            pass


if __name__ == "__main__":
    main()
