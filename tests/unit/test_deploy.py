"""The monitoring files docker-compose mounts: valid, and naming only metrics wavegraph exports."""

import json
import re
from pathlib import Path

import yaml

from wavegraph.metrics import REGISTRY

DEPLOY = Path(__file__).parents[2] / "deploy"


def exported_names() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        names.add(metric.name)
        if metric.type == "counter":
            names.add(metric.name + "_total")
        if metric.type == "histogram":
            names.update(metric.name + s for s in ("_bucket", "_sum", "_count"))
        for sample in metric.samples:
            names.add(sample.name)
    return names


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors such as [5m]
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    promql = {"sum", "by", "rate", "histogram_quantile", "le", "processor", "reason", "device"}
    return {w for w in words if w not in promql}


def test_alert_rules_use_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs
    known = exported_names()
    for expr in exprs:
        assert metric_names(str(expr)) <= known, expr


def test_dashboard_panels_use_exported_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "wavegraph.json").read_text())
    known = exported_names()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            assert metric_names(target["expr"]) <= known, target["expr"]
