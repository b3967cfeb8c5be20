"""The wavegraph Grafana dashboard, as code, built with ``grafana-foundation-sdk`` (Grafana's schema).

``deploy/grafana/dashboards/wavegraph.json`` is :func:`render`'s output, checked in for the Grafana
that docker-compose provisions; ``wavegraph grafana render --out deploy/grafana/dashboards/wavegraph.json``
regenerates it and a unit test fails when the two differ. ``wavegraph grafana upload`` sends the same
dashboard to a Grafana over its HTTP API.

Every panel reads a metric wavegraph exports (:mod:`wavegraph.metrics`, the response cache's among
them, the LMDB embedding cache in :mod:`wavegraph.query.embedding_cache`);
:func:`wavegraph.ops.metric_names.unknown_metrics` is the check. Panels take their data source from
the dashboard variable ``datasource`` (any Prometheus data source of the Grafana it lands in), so the
JSON does not depend on a data-source uid.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard

__all__ = ["UID", "Query", "build", "dashboard_json", "queries", "render"]

UID = "wavegraph"
TITLE = "wavegraph"
_DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")


def _query(expr: str, legend: str = "__auto", ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)


def _thresholds(*steps: tuple[float | None, str]) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def _series(
    title: str, description: str, *targets: prometheus.Dataquery, unit: str = "short"
) -> timeseries.Panel:
    """A time series panel with a table legend (the last value and the maximum of each series)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_DATASOURCE)
        .unit(unit)
        .span(12)
        .height(8)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common_b.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .calcs(["lastNotNull", "max"])
        )
    )
    for target in targets:
        panel.with_target(target)
    return panel


def _limit_line(panel: timeseries.Panel, limit: float, *, green_below: bool = True) -> timeseries.Panel:
    """Draw ``limit`` as a dashed threshold line (red above it, or below it)."""
    colors = ("green", "red") if green_below else ("red", "green")
    return panel.thresholds(_thresholds((None, colors[0]), (limit, colors[1]))).thresholds_style(
        common_b.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
    )


def _breaker() -> statetimeline.Panel:
    states = {
        "0": dashboard.ValueMappingResult(text="closed", color="green", index=0),
        "1": dashboard.ValueMappingResult(text="open", color="red", index=1),
        "2": dashboard.ValueMappingResult(text="half-open", color="yellow", index=2),
    }
    return (
        statetimeline.Panel()
        .title("Neo4j circuit breaker")
        .description(
            "breaker_state: 0 closed, 1 open (writes refused, edges buffered), 2 half-open (probing)."
        )
        .datasource(_DATASOURCE)
        .span(12)
        .height(8)
        .mappings([dashboard.ValueMap(options=states)])
        .merge_values(True)
        .show_value(common.VisibilityMode.NEVER)
        .with_target(_query("max(breaker_state)", "breaker"))
    )


def _ingest() -> Iterator[Any]:
    yield _breaker()
    yield _limit_line(
        _series(
            "Neo4j sink buffer fill",
            "ingest_queue_fill_ratio: edges buffered by the Neo4j sink / its capacity (backpressure at 1).",
            _query("max(ingest_queue_fill_ratio)", "fill"),
            unit="percentunit",
        )
        .min(0)
        .max(1),
        0.8,
    )
    yield _series(
        "Consumer lag (records)",
        "wavegraph_consumer_lag: high watermark minus committed offset, by processor and topic.",
        _query("sum by (processor, topic) (wavegraph_consumer_lag)", "{{processor}} {{topic}}"),
    )
    yield _series(
        "Events sunk / s",
        "wavegraph_events_sunk_total: valid events written and flushed, by processor.",
        _query("sum by (processor) (rate(wavegraph_events_sunk_total[1m]))", "{{processor}}"),
        unit="ops",
    )
    yield _series(
        "Dead letters / s",
        "wavegraph_dlq_events_total: events sent to wavegraph.dlq.v1, by processor and reason code.",
        _query(
            "sum by (processor, reason) (rate(wavegraph_dlq_events_total[5m]))", "{{processor}} {{reason}}"
        ),
        unit="ops",
    )
    yield _series(
        "Batch fetch → commit p99",
        "wavegraph_batch_seconds: time from fetch to offset commit of one batch, by processor.",
        _query(
            "histogram_quantile(0.99, sum by (le, processor) (rate(wavegraph_batch_seconds_bucket[5m])))",
            "{{processor}}",
        ),
        unit="s",
    )


def _speech() -> Iterator[Any]:
    yield _limit_line(
        _series(
            "Whisper xRT (last transcription)",
            "whisper_xrt: processing time / audio time of the last transcription; above 1 it falls behind.",
            _query("max by (device, model) (whisper_xrt)", "{{device}} {{model}}"),
        ).min(0),
        1.0,
    )
    yield _limit_line(
        _series(
            "Whisper xRT p95 per window",
            "whisper_xrt_ratio: real-time factor of each transcribed window.",
            _query(
                "histogram_quantile(0.95, sum by (le, device, model) (rate(whisper_xrt_ratio_bucket[5m])))",
                "{{device}} {{model}}",
            ),
        ).min(0),
        1.0,
    )


def _read_side() -> Iterator[Any]:
    yield (
        _series(
            "Response cache hit ratio",
            "cache_hit_ratio: hits / lookups of the Redis response cache over the last PI interval.",
            _query("avg(cache_hit_ratio)", "hit ratio"),
            unit="percentunit",
        )
        .min(0)
        .max(1)
    )
    yield _series(
        "Response cache TTL (PI controller)",
        "cache_ttl_seconds: the TTL the PI controller gives new response-cache entries (log scale).",
        _query("avg(cache_ttl_seconds)", "ttl"),
        unit="s",
    ).scale_distribution(common_b.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10))
    yield _series(
        "Query-embedding cache (LMDB) evictions / s",
        "lmdb_evictions_total: query embeddings evicted, least recently used first.",
        _query("sum(rate(lmdb_evictions_total[5m]))", "evictions"),
        unit="ops",
    )
    yield (
        _series(
            "Query-embedding cache (LMDB) hit ratio",
            "lmdb_hit_ratio: hits / lookups of the LMDB query-embedding cache, per API process.",
            _query("avg(lmdb_hit_ratio)", "hit ratio"),
            unit="percentunit",
        )
        .min(0)
        .max(1)
    )
    yield _series(
        "HTTP 429 / s",
        "wavegraph_http_rejected_total: requests refused by admission control, by reason.",
        _query("sum by (reason) (rate(wavegraph_http_rejected_total[1m]))", "{{reason}}"),
        unit="reqps",
    )
    yield _series(
        "Query latency p95",
        "wavegraph_search_query_ms (by backend) and pgvector_query_ms: p95 over 5 minutes.",
        _query(
            "histogram_quantile(0.95, sum by (le, backend) (rate(wavegraph_search_query_ms_bucket[5m])))",
            "search {{backend}}",
        ),
        _query("histogram_quantile(0.95, sum by (le) (rate(pgvector_query_ms_bucket[5m])))", "pgvector", "B"),
        unit="ms",
    )


def build() -> dashboard.Dashboard:
    """The dashboard model (Grafana's schema): three rows, ingest, speech, read side."""
    builder = (
        dash_b.Dashboard(TITLE)
        .uid(UID)
        .description("wavegraph: ingest to Neo4j, speech recognition, the read side's caches.")
        .tags(["wavegraph"])
        .editable()
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("30s")
        .with_variable(dash_b.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    ids = itertools.count(1)
    for title, panels in (("Ingest", _ingest()), ("Speech", _speech()), ("Read side", _read_side())):
        builder.with_row(dash_b.Row(title).id(next(ids)))
        for panel in panels:
            builder.with_panel(panel.id(next(ids)))
    return builder.build()


def dashboard_json() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (plain dicts and lists)."""
    data: dict[str, Any] = json.loads(json.dumps(build(), cls=JSONEncoder))
    return data


def render() -> str:
    """The checked-in file's exact text: the JSON model, indented by 2, with a final newline."""
    return json.dumps(dashboard_json(), indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Query:
    """One panel query: where it is, and its PromQL."""

    panel: str
    ref_id: str
    expr: str


def queries(model: dict[str, Any]) -> list[Query]:
    """Every PromQL query of a dashboard's JSON model, rows' collapsed panels included."""
    found: list[Query] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels") or [])
            for target in panel.get("targets") or []:
                if "expr" in target:
                    found.append(
                        Query(str(panel.get("title", "")), str(target.get("refId", "")), target["expr"])
                    )

    walk(model.get("panels") or [])
    return found
