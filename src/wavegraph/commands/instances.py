"""``wavegraph run edges|audio|graph --instances N``: N processes of one processor in one consumer group.

The parent starts N children (``python -m wavegraph.cli run PROCESSOR``, the same settings and
environment), forwards SIGTERM/SIGINT to all of them and waits; the consumer group shares the
partitions between the children and moves a child's partitions to the others when it exits. Child
``i`` serves its metrics on ``metrics.PROCESSOR_port + i`` (0 stays 0: none). A child that exits on
its own is reported at once and the others go on (that is what the group is for); the parent exits
when every child has, with the first non-zero exit code, or 0.

Graph-job instances share the tenants: each holds the tenants of its partitions of the tenant-keyed
edge copy (:mod:`wavegraph.processors.graph_job.ownership`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from rich.console import Console

from wavegraph.settings import load_settings

__all__ = ["run_instances"]


def run_instances(processor: str, n: int) -> int:
    """Run ``n`` children of ``processor`` until they exit; return the exit code for the parent."""
    return asyncio.run(_supervise(processor, n))


async def _supervise(processor: str, n: int) -> int:
    console = Console(stderr=True)
    base = load_settings().metrics.port(processor)  # type: ignore[arg-type]
    children = []
    for i in range(n):
        env = {
            **os.environ,
            f"WAVEGRAPH_METRICS__{processor.upper()}_PORT": str(base + i if base else 0),
            "WAVEGRAPH_RUNTIME__INSTANCE": str(i),  # its own Kafka transactional id
        }
        children.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wavegraph.cli",
                "run",
                processor,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
            )
        )
    console.print(f"{processor}: {n} instances, pids {[c.pid for c in children]}")
    loop = asyncio.get_running_loop()

    def forward(sig: signal.Signals) -> None:
        for child in children:
            if child.returncode is None:
                child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, forward, sig)

    async def watch(i: int) -> int:
        code = await children[i].wait()
        if code != 0:
            console.print(f"{processor} instance {i} (pid {children[i].pid}) exited with {code}")
        return code

    codes = await asyncio.gather(*(watch(i) for i in range(n)))
    return next((c for c in codes if c != 0), 0)
