"""The monitoring files docker-compose mounts: the dashboard is the one built from code, it has the
panels operators need, and every query (panels and alert rules) reads only metrics wavegraph exports.

Metric names are parsed out of the PromQL (``promql-parser``) and checked against the live registry
(:func:`wavegraph.ops.metric_names.exported_metric_names`), as ``wavegraph grafana upload`` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from wavegraph.ops.dashboard import UID, queries, render
from wavegraph.ops.grafana import DashboardRefused, check_dashboard
from wavegraph.ops.metric_names import exported_metric_names, metric_modules, metric_names, unknown_metrics

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "wavegraph.json"


def checked_in() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_the_checked_in_dashboard_is_the_one_built_from_code() -> None:
    assert DASHBOARD.read_text() == render(), (
        "regenerate it: wavegraph grafana render --out deploy/grafana/dashboards/wavegraph.json"
    )


def test_grafana_schema_knows_every_key_of_the_dashboard() -> None:
    """Grafana's schema (the foundation SDK's models) reads the file back without dropping anything."""
    data = checked_in()
    back = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    assert back == data
    assert data["uid"] == UID


# the panels operators asked for: (a words in its title, the metric its query must read)
REQUIRED = [
    ("breaker", "breaker_state"),
    ("buffer fill", "ingest_queue_fill_ratio"),
    ("lag", "wavegraph_consumer_lag"),
    ("xrt", "whisper_xrt"),
    ("hit ratio", "cache_hit_ratio"),
    ("ttl", "cache_ttl_seconds"),
    ("evictions", "lmdb_evictions_total"),
]


@pytest.mark.parametrize(("title", "metric"), REQUIRED)
def test_the_dashboard_has_a_panel_for(title: str, metric: str) -> None:
    readers = [q for q in queries(checked_in()) if metric in metric_names(q.expr).names]
    assert readers, f"no panel reads {metric}"
    assert any(title in q.panel.lower() for q in readers), [q.panel for q in readers]


def test_every_panel_is_drawn_from_prometheus_through_the_datasource_variable() -> None:
    data = checked_in()
    panels = [p for p in data["panels"] if p["type"] != "row"]
    assert len(panels) >= len(REQUIRED)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
    ids = [p["id"] for p in data["panels"]]
    assert len(set(ids)) == len(ids)
    assert [v["name"] for v in data["templating"]["list"]] == ["datasource"]


def test_dashboard_panels_use_exported_metrics() -> None:
    check_dashboard(checked_in())  # raises DashboardRefused naming the panel otherwise
    assert len(queries(checked_in())) >= len(REQUIRED)


def test_the_check_refuses_an_unexported_metric_and_names_the_panel() -> None:
    data = checked_in()
    panel = next(p for p in data["panels"] if p.get("targets"))
    panel["targets"][0]["expr"] = "rate(wavegraph_events_sunk[1m])"  # a counter is read as ..._total
    with pytest.raises(DashboardRefused) as refused:
        check_dashboard(data)
    assert refused.value.problems == [
        f"panel {panel['title']!r} query A reads metrics wavegraph does not export: wavegraph_events_sunk"
    ]


def test_the_registry_includes_the_modules_that_register_their_own_metrics() -> None:
    assert {"wavegraph.metrics", "wavegraph.query.embedding_cache"} <= set(metric_modules())
    names = exported_metric_names()
    assert {"lmdb_evictions_total", "cache_ttl_seconds", "wavegraph_batch_seconds_bucket"} <= names
    assert "wavegraph_events_sunk" not in names  # counters are exposed with _total only


def test_metric_names_are_parsed_not_guessed() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, processor) (rate(wavegraph_batch_seconds_bucket{job="x"}[5m])))'
        ' > on (processor) group_left max_over_time(breaker_state[10m] offset 5m) + {__name__="whisper_xrt"}'
    )
    assert metric_names(expr).names == {"wavegraph_batch_seconds_bucket", "breaker_state", "whisper_xrt"}
    assert unknown_metrics('{__name__=~"lmdb_.*"} + {__name__=~"nothing_.*"}') == ["{__name__=~'nothing_.*'}"]


def test_alert_rules_use_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    exprs = [(r.get("alert") or r.get("record"), str(r["expr"])) for g in rules["groups"] for r in g["rules"]]
    assert exprs
    assert [(name, unknown_metrics(expr)) for name, expr in exprs if unknown_metrics(expr)] == []
