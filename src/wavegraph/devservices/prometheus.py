"""Prometheus from Debian's ``prometheus`` package, run directly (never through the package's unit).

Optional: ``wavegraph services up --with prometheus``. Its configuration is generated at every start
into ``<state_dir>/prometheus/prometheus.yml`` (:func:`prometheus_config`): scrape the API's ``/metrics``
(``http.port``) and every processor's metrics port (``metrics.*_port``; 0 is skipped), evaluate the alert
rules of ``prometheus.rules_file`` (the repository's ``deploy/prometheus/rules.yml``), with the scrape
and evaluation intervals of ``prometheus.*_s``. The TSDB lives in ``<state_dir>/prometheus/data``; the
server is ready when ``/-/ready`` answers 200.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml

from wavegraph.devservices import process
from wavegraph.devservices.base import Service, ServiceError
from wavegraph.devservices.prereqs import require
from wavegraph.errors import ConfigError
from wavegraph.settings import Settings

PROCESSORS: tuple[Literal["edges", "audio", "graph"], ...] = ("edges", "audio", "graph")


def duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration (whole milliseconds, e.g. ``"2000ms"``)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _local(host: str) -> str:
    """The address to scrape a server bound to ``host`` (a wildcard bind is scraped on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def prometheus_config(settings: Settings) -> dict[str, Any]:
    """The ``prometheus.yml`` content for ``settings``: one job for the API, one per processor port."""
    p = settings.prometheus
    interval = duration(p.scrape_interval_s)
    api: dict[str, Any] = {
        "job_name": "wavegraph-api",
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [f"{_local(settings.http.host)}:{settings.http.port}"]}],
    }
    if settings.http.metrics_key is not None:
        api["authorization"] = {"type": "Bearer", "credentials": settings.http.metrics_key}
    jobs = [api]
    for name in PROCESSORS:
        port = settings.metrics.port(name)
        if port:
            jobs.append(
                {
                    "job_name": f"wavegraph-{name}",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [f"{_local(settings.metrics.host)}:{port}"]}],
                }
            )
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": duration(p.evaluation_interval_s),
        },
        "rule_files": [str(p.rules_file.absolute())],
        "scrape_configs": jobs,
    }


class Prometheus(Service):
    name = "prometheus"

    @property
    def host(self) -> str:
        return self.settings.prometheus.host

    @property
    def port(self) -> int:
        return self.settings.prometheus.port

    @property
    def config_file(self) -> Path:
        return self.state_dir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def check_prerequisites(self) -> None:
        require("prometheus", "to run Prometheus")
        rules = self.settings.prometheus.rules_file
        if not rules.is_file():
            raise ConfigError(
                f"prometheus.rules_file names {rules.absolute()}, which does not exist "
                "(run from the repository root, or set WAVEGRAPH_PROMETHEUS__RULES_FILE)"
            )

    def write_config(self) -> Path:
        """Write :func:`prometheus_config` to ``prometheus.yml`` in the state dir (mode 0600: it may
        hold the API's metrics key) and return its path."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(prometheus_config(self.settings), sort_keys=False)
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return self.config_file

    async def _start(self) -> None:
        binary = require("prometheus", "to run Prometheus")
        p = self.settings.prometheus
        argv = [
            binary,
            f"--config.file={self.write_config()}",
            f"--storage.tsdb.path={self.state_dir / 'data'}",
            f"--storage.tsdb.retention.time={p.retention}",
            f"--web.listen-address={self.host}:{self.port}",
        ]
        pid = process.spawn_detached(argv, self.log_file)
        process.write_pid(self.pid_file, pid)

    async def _request(self) -> str:
        import httpx

        async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as client:
            ready = await client.get("/-/ready")
            if ready.status_code != 200:
                raise ServiceError(f"/-/ready answered {ready.status_code}: {ready.text.strip()}")
            targets = (await client.get("/api/v1/targets", params={"state": "active"})).json()
        active = targets["data"]["activeTargets"]
        up = sum(1 for t in active if t["health"] == "up")
        return f"ready, {up}/{len(active)} targets up"
