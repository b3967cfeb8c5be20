"""Resolve a service's JARs from Maven Central into the wavegraph cache, once.

``<cache_dir>/<name>-<version>/lib`` is filled by ``mvn dependency:copy-dependencies`` on the POM shipped
in ``devservices/maven/<name>.pom.xml`` (the version passed as ``-D<name>.version``), written to a
temporary directory and renamed into place, so a half-finished download is never mistaken for a cache.
Maven's own repository (``~/.m2``) makes a second resolution after a cache wipe fast.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wavegraph.devservices.base import ServiceError
from wavegraph.devservices.prereqs import require
from wavegraph.devservices.process import file_lock

POM_DIR = Path(__file__).with_name("maven")


@dataclass(frozen=True)
class Jars:
    lib: Path
    resolved: bool
    """True when mvn ran in this call (cold cache), False when the cache was reused."""

    @property
    def classpath(self) -> str:
        return f"{self.lib}/*"


def home(cache_dir: Path, name: str, version: str) -> Path:
    return cache_dir / f"{name}-{version}"


def cached(cache_dir: Path, name: str, version: str) -> bool:
    return (home(cache_dir, name, version) / "lib" / ".complete").exists()


async def resolve(cache_dir: Path, name: str, version: str) -> Jars:
    """The lib directory of ``name`` at ``version``, resolving it with mvn when not cached."""
    lib = home(cache_dir, name, version) / "lib"
    if (lib / ".complete").exists():
        return Jars(lib, resolved=False)
    return await asyncio.to_thread(_resolve_locked, lib, name, version)


def _resolve_locked(lib: Path, name: str, version: str) -> Jars:
    with file_lock(lib.parent / ".resolve.lock"):
        if (lib / ".complete").exists():  # another process won the race
            return Jars(lib, resolved=False)
        mvn = require("mvn", f"to download the {name} JARs from Maven Central")
        tmp = lib.with_name("lib.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM_DIR / f"{name}.pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                f"-D{name}.version={version}",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not any(tmp.glob("*.jar")):
            out = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise ServiceError(f"mvn could not resolve {name} {version}:\n" + "\n".join(out))
        (tmp / ".complete").write_text(version + "\n")
        shutil.rmtree(lib, ignore_errors=True)
        tmp.rename(lib)
        return Jars(lib, resolved=True)
