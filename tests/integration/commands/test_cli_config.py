"""``wavegraph config show | check`` as commands (subprocesses): the effective settings, overrides and
the one-sentence refusal of a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from wavegraph.settings import Settings


def wavegraph(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WAVEGRAPH_") or k in env}
    return subprocess.run(
        [sys.executable, "-m", "wavegraph.cli", *args],
        env={**clean, "COLUMNS": "1000", "WAVEGRAPH_HTTP__ALLOW_DEV_KEYS": "true", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_config_show_prints_the_effective_settings_as_yaml_with_overrides(tmp_path: Path) -> None:
    plain = wavegraph("config", "show")
    assert plain.returncode == 0, plain.stderr
    shown = yaml.safe_load(plain.stdout)
    assert shown == Settings(http={"allow_dev_keys": True}).model_dump(mode="json")  # type: ignore[arg-type]

    extra = tmp_path / "mine.yaml"
    extra.write_text("neo4j:\n  database: fromfile\n")
    overridden = wavegraph("config", "show", WAVEGRAPH_KAFKA__PORT="19092", WAVEGRAPH_CONFIG=str(extra))
    assert overridden.returncode == 0, overridden.stderr
    values = yaml.safe_load(overridden.stdout)
    assert values["kafka"]["port"] == 19092
    assert values["neo4j"]["database"] == "fromfile"
    assert {k: v for k, v in values.items() if k not in ("kafka", "neo4j")} == {
        k: v for k, v in shown.items() if k not in ("kafka", "neo4j")
    }


def test_config_check_accepts_good_settings_and_names_a_bad_value_in_one_sentence() -> None:
    good = wavegraph("config", "check")
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "settings are valid"

    bad = wavegraph("config", "check", WAVEGRAPH_KAFKA__PORT="not-a-port")
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert "Traceback" not in bad.stderr
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), bad.stderr
    assert "kafka.port" in lines[0] and "not-a-port" in lines[0]
