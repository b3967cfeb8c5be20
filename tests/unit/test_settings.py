from pathlib import Path

import pytest

from wavegraph.errors import ConfigError
from wavegraph.settings import Settings, defaults_as_yaml, load_settings

ROOT = Path(__file__).parents[2]


def test_committed_yaml_holds_every_default() -> None:
    text = (ROOT / "config" / "wavegraph.yaml").read_text()
    body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#")) + "\n"
    assert body == defaults_as_yaml()
    assert load_settings(ROOT / "config" / "wavegraph.yaml", env={}) == Settings()


def test_env_overrides_win_and_are_typed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  port: 1000\n")
    s = load_settings(cfg, env={"WAVEGRAPH_KAFKA__PORT": "19092", "WAVEGRAPH_INGEST__BREAKER_FAIL_MAX": "7"})
    assert s.kafka.port == 19092
    assert s.ingest.breaker_fail_max == 7
    assert s.kafka.bootstrap == "127.0.0.1:19092"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.kafka.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"WAVEGRAPH_KAFKA__PORT": "99999"}, "kafka.port"),
        ({"WAVEGRAPH_GRAPH__DAMPING": "1.5"}, "graph.damping"),
        ({"WAVEGRAPH_VECTOR__BACKEND": "annoy"}, "vector.backend"),
        ({"WAVEGRAPH_KAFKA__PROT": "1"}, "kafka.prot"),
        ({"WAVEGRAPH_CONFIG": "/nonexistent.yaml"}, "does not exist"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(None, env=env)


def test_bad_yaml_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(cfg, env={})


def test_the_managed_postgres_keeps_freed_memory_unless_told_not_to() -> None:
    env = {"WAVEGRAPH_POSTGRES__MALLOC_KEEP": "1GB"}
    assert load_settings(None, env=env).postgres.server_env() == {
        "MALLOC_TRIM_THRESHOLD_": str(2**30),
        "MALLOC_MMAP_THRESHOLD_": str(2**30),
    }
    assert Settings().postgres.server_env()["MALLOC_TRIM_THRESHOLD_"] == str(256 * 2**20)
    assert load_settings(None, env={"WAVEGRAPH_POSTGRES__MALLOC_KEEP": "0"}).postgres.server_env() == {}
    with pytest.raises(ConfigError):
        load_settings(None, env={"WAVEGRAPH_POSTGRES__MALLOC_KEEP": "lots"})
