"""Where another process spends its CPU time, sampled by Linux ``perf`` (the ``linux-perf`` package).

A bench that waits on a server (PostgreSQL here) can time a query but not say what the server did with
the time. :class:`PerfRecording` attaches ``perf record`` to the server's processes for the duration of a
``with`` block (sampling at :data:`FREQUENCY` Hz, no call graphs: a flat profile is enough to tell the
distance function from the sort); :func:`read_profile` turns the recording into the share of samples per
symbol and per :data:`CATEGORIES` group. Without ``perf`` (or without the right to attach: see
``kernel.perf_event_paranoid``) the recording reports why and the bench goes on without a profile.

Shares are of the samples taken in the attached processes, user and kernel code alike (the kernel's
``[k]`` symbols are one group: page faults of fresh memory, mostly)."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "CATEGORIES",
    "FREQUENCY",
    "PerfRecording",
    "Profile",
    "categorise",
    "parse_report",
    "read_profile",
]

FREQUENCY = 999  # Hz: off the timer's round numbers, a few thousand samples in a few seconds
ATTACH_S = 0.3  # perf needs a moment to open its events before the work it should see starts

# First match wins, on the lowercased symbol. Written for PostgreSQL + pgvector; anything else is "other".
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("distance", r"distance|innerproduct|inner_product|cosine|l2squared|hamming|jaccard"),
    ("sort", r"qsort|tuplesort|sort|fastcmp|cmp_ssup|comparetup"),
    ("index scan", r"getscanitems|ivfflat|ivfscan|hnsw"),
    ("buffers", r"hash_search|buffer|lwlock|bufmgr"),
    ("tuples", r"minimal_tuple|fill_val|heap_fill|heap_compute|tts_|slot|detoast|heap_form"),
    ("memory", r"alloc|memset|memmove|memcpy|pfree"),
)
# "  30.80%   17381  [.] HalfvecInnerProductF16c    -   -": share, samples (-n), space, symbol, other columns
_LINE = re.compile(
    r"^\s*(?P<share>\d+(?:\.\d+)?)%\s+(?:(?P<samples>\d+)\s+)?\[(?P<space>[.kgu])\]\s+"
    r"(?P<symbol>\S(?:.*?\S)?)(?:\s{2,}.*)?$"
)


@dataclass(frozen=True)
class Profile:
    """A flat profile: ``symbols`` as ``(name, share)`` best first, ``groups`` the shares summed by
    category (``kernel`` for kernel symbols, ``other`` for the rest), shares in [0, 1]."""

    samples: int
    symbols: tuple[tuple[str, float], ...]
    groups: dict[str, float] = field(default_factory=dict)

    def as_json(self, top: int = 12) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "groups": {name: round(share, 4) for name, share in self.groups.items()},
            "top": [[name, round(share, 4)] for name, share in self.symbols[:top]],
        }


def categorise(symbol: str, kernel: bool = False) -> str:
    """The :data:`CATEGORIES` group of a symbol (``kernel`` for kernel code, ``other`` when none fits)."""
    if kernel:
        return "kernel"
    name = symbol.lower()
    for group, pattern in CATEGORIES:
        if re.search(pattern, name):
            return group
    return "other"


def parse_report(text: str) -> Profile:
    """The profile in ``perf report --stdio --no-children --sort symbol -n`` output (headers, blank lines
    and call-chain lines are skipped; without ``-n``, ``samples`` is 0)."""
    symbols: dict[str, float] = {}
    groups: dict[str, float] = {}
    samples = 0
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        share = float(m["share"]) / 100.0
        symbols[m["symbol"]] = symbols.get(m["symbol"], 0.0) + share
        group = categorise(m["symbol"], kernel=m["space"] == "k")
        groups[group] = groups.get(group, 0.0) + share
        samples += int(m["samples"] or 0)
    ordered = tuple(sorted(symbols.items(), key=lambda item: -item[1]))
    return Profile(samples, ordered, dict(sorted(groups.items(), key=lambda item: -item[1])))


def read_profile(path: Path, perf: str = "perf") -> Profile:
    """The flat profile of a ``perf record`` output file."""
    argv = [perf, "report", "-i", str(path), "--stdio", "--no-children", "--sort", "symbol", "-n", "-q"]
    report = subprocess.run([*argv, "-g", "none"], capture_output=True, text=True, check=False)
    if report.returncode != 0:
        raise RuntimeError(f"perf report failed: {report.stderr.strip()[-300:]}")
    return parse_report(report.stdout)


class PerfRecording:
    """``async with PerfRecording(pids) as rec:`` samples ``pids`` while the block runs; afterwards
    ``rec.profile`` is the :class:`Profile` (or ``None``, with ``rec.unavailable`` saying why)."""

    def __init__(self, pids: Sequence[int], *, frequency: int = FREQUENCY, perf: str | None = None) -> None:
        if not pids:
            raise ValueError("PerfRecording needs at least one pid")
        self.pids = tuple(dict.fromkeys(int(p) for p in pids))
        self.frequency = frequency
        self.perf = shutil.which(perf or "perf")
        self.profile: Profile | None = None
        self.unavailable: str | None = None if self.perf else "perf is not installed (Debian: linux-perf)"
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> PerfRecording:
        if self.perf is None:
            return self
        self._dir = tempfile.TemporaryDirectory(prefix="wavegraph-perf-")
        out = Path(self._dir.name) / "perf.data"
        pid_list = ",".join(map(str, self.pids))
        self._proc = await asyncio.create_subprocess_exec(
            self.perf, "record", "-q", "-F", str(self.frequency), "-p", pid_list, "-o", str(out),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(ATTACH_S)
        if self._proc.returncode is not None:  # refused at once (no permission, no such pid)
            self.unavailable = await self._stderr("perf record exited at once")
            self._proc = None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._proc is None:
                return
            if self._proc.returncode is None:
                self._proc.send_signal(signal.SIGINT)  # perf writes its file and exits on SIGINT
            await self._proc.wait()
            out = Path(self._dir.name) / "perf.data" if self._dir else None
            if exc_type is None and out is not None and out.exists():
                try:
                    self.profile = await asyncio.to_thread(read_profile, out, self.perf or "perf")
                except RuntimeError as err:
                    self.unavailable = str(err)
            elif exc_type is None:
                self.unavailable = await self._stderr("perf record wrote nothing")
        finally:
            if self._dir is not None:
                self._dir.cleanup()

    async def _stderr(self, what: str) -> str:
        err = b""
        if self._proc is not None and self._proc.stderr is not None:
            err = await self._proc.stderr.read()
        detail = err.decode(errors="replace").strip().splitlines()
        return f"{what}: {detail[-1]}" if detail else what
