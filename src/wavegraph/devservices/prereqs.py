"""Programs the services need, each with the Debian package that provides it."""

from __future__ import annotations

import shutil

from wavegraph.errors import MissingPrerequisite

PACKAGES: dict[str, str] = {
    "java": "openjdk-17-jre-headless",
    "javac": "openjdk-17-jdk-headless",
    "mvn": "maven",
    "redis-server": "redis-server",
    "prometheus": "prometheus",
}


def which(program: str) -> str | None:
    """Absolute path of ``program`` on PATH, or None."""
    return shutil.which(program)


def require(program: str, purpose: str) -> str:
    """Absolute path of ``program``; raise :class:`MissingPrerequisite` naming its package if absent."""
    path = shutil.which(program)
    if path is None:
        package = PACKAGES.get(program, program)
        raise MissingPrerequisite(
            f"`{program}` was not found on PATH; it is needed {purpose}: "
            f"install it with `apt-get install -y {package}`."
        )
    return path
