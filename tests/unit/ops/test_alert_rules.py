"""``deploy/prometheus/rules.yml``: every selector names a metric wavegraph exports, every required alert
is there, and every alert has promtool unit tests for both outcomes (``deploy/prometheus/tests/``).

The names come from the live registry (:func:`wavegraph.ops.metric_names.exported_metric_names` imports
every module that registers a metric), and the expressions are parsed by a PromQL parser, so renaming a
metric in the code, or a typo in a rule, fails here. ``make alert-rules`` runs promtool itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from wavegraph.ops.metric_names import exported_metric_names, metric_names, unknown_metrics

PROMETHEUS = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"

# The alerts issue 14 asks for, by what they watch.
REQUIRED = {
    "Neo4jBreakerOpen": "breaker_state",
    "IngestBufferNearlyFull": "ingest_queue_fill_ratio",
    "ConsumerLagGrowing": "wavegraph_consumer_lag",
    "DeadLettersRising": "wavegraph_dlq_events_total",
    "WhisperSlowerThanRealTime": "whisper_xrt",
    "CacheHitRatioOffTarget": "pid_error",
}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def promtool_cases() -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` entry of the promtool test files."""
    cases = []
    for path in sorted((PROMETHEUS / "tests").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == ["../rules.yml"], path.name
        for test in doc["tests"]:
            cases += test.get("alert_rule_test", [])
    return cases


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_selector_names_an_exported_metric(rule: dict[str, Any]) -> None:
    assert unknown_metrics(str(rule["expr"])) == []


def test_each_required_alert_watches_its_metric() -> None:
    exprs = {rule["alert"]: str(rule["expr"]) for rule in alert_rules()}
    assert set(REQUIRED) <= set(exprs)
    for alert, metric in REQUIRED.items():
        assert metric in metric_names(exprs[alert]).names, alert
        assert metric in exported_metric_names(), metric


def test_a_renamed_metric_is_reported() -> None:
    """The check above can fail: a rule reading a name the code no longer exports is caught."""
    expr = "deriv(wavegraph_consumer_lag_records[10m]) > 0 and wavegraph_consumer_lag > 1000"
    assert unknown_metrics(expr) == ["wavegraph_consumer_lag_records"]


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    cases = promtool_cases()
    missing = []
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        if not any(case.get("exp_alerts") for case in mine):
            missing.append(f"{rule['alert']}: no firing case")
        if not any(not case.get("exp_alerts") for case in mine):
            missing.append(f"{rule['alert']}: no quiet case")
    assert missing == []


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "warn"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
