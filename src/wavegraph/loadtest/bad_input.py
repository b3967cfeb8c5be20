"""Bad input: a stream with a share of malformed and hostile events; every one of them is a dead letter
with a reason, every valid one is in Neo4j, the processor stays up, and the dead-letter metric keeps a
bounded number of series (its label is a reason code from a fixed set, whatever the field names).

One record in ``round(100 / malformed_pct)`` is malformed, cycling through the kinds of :data:`KINDS`
(values beyond int64, NUL characters, NaN, nested props, unknown fields with random names, records of
16 MiB — at most :data:`MAX_HUGE` of those, the rest of that kind become plain oversized records).
Every record is keyed by its sequence number, so a dead letter (which keeps the original key, value and
headers) is matched back to the record it came from and its ``wg.dlq.reason`` checked against the kind.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition

from wavegraph import metrics
from wavegraph.clients import make_consumer
from wavegraph.events import parse_dlq_headers
from wavegraph.loadtest.kafka_load import HeadedRecord, publish_records
from wavegraph.loadtest.lag import LagProbe
from wavegraph.loadtest.scope import Scope, new_scope, scope_topics
from wavegraph.loadtest.summary import graph_ok, with_checks
from wavegraph.loadtest.verify import verify_run
from wavegraph.loadtest.workers import inline_worker
from wavegraph.loadtest.workload import EdgeWorkload
from wavegraph.report import build_report
from wavegraph.settings import Settings
from wavegraph.streams.reasons import CODES

# kind → words its dead-letter reason must contain
KINDS: dict[str, str] = {
    "bad_json": "bad JSON",
    "missing_field": "src",
    "wrong_type": "weight",
    "oversized": "oversized",
    "unknown_tenant": "unknown tenant",
    "beyond_int64": "64-bit",
    "nul_character": "NUL",
    "nan": "finite",
    "nested_props": "nested",
    "unknown_field": "Extra inputs",
    "record_16mib": "oversized",
}
MAX_HUGE = 4  # 16 MiB records per run


@dataclass(frozen=True)
class BadInputPlan:
    events: int = 10_000
    malformed_pct: float = 2.0
    timeout_s: float = 300.0
    cleanup: bool = True


def malformed(kind: str, wl: EdgeWorkload, i: int, max_bytes: int, record_bytes: int = 0) -> bytes:
    """Event ``i`` of ``wl`` spoiled the way ``kind`` says (``record_bytes``: the size of a huge one)."""
    ev: dict[str, Any] = wl.event(i)
    if kind == "bad_json":
        return orjson.dumps(ev)[:-7]
    if kind == "missing_field":
        del ev["src"]
    elif kind == "wrong_type":
        ev["weight"] = "heavy"
    elif kind == "oversized":
        ev["props"] = {"pad": "x" * max_bytes}
    elif kind == "unknown_tenant":
        ev["tenant"] = f"{wl.tenant}-unknown"
    elif kind == "beyond_int64":
        ev["props"] = {"n": 10**20 + i}
    elif kind == "nul_character":
        ev["dst"] = f"{ev['dst']}\x00"
    elif kind == "nan":
        ev["weight"] = float("nan")  # json writes the NaN token, which JSON does not allow
    elif kind == "nested_props":
        ev["props"] = {"deep": {"er": {"est": [i, {"x": i}]}}}
    elif kind == "unknown_field":
        ev[f"f_{secrets.token_hex(6)}"] = i  # a new field name each time
    elif kind == "record_16mib":
        ev["props"] = {"pad": "x" * max(record_bytes, max_bytes + 1)}
    else:
        raise ValueError(f"unknown kind of malformed event: {kind!r}")
    return json.dumps(ev).encode()


def stream(
    wl: EdgeWorkload, events: int, malformed_pct: float, max_bytes: int, record_bytes: int = 0
) -> tuple[list[HeadedRecord], dict[int, str]]:
    """The records (key, value, headers) and the kind of every malformed sequence number."""
    every = max(1, round(100 / malformed_pct))
    kinds = list(KINDS)
    records: list[HeadedRecord] = []
    bad: dict[int, str] = {}
    huge = 0
    for i in range(events):
        if i % every == every - 1:
            kind = kinds[len(bad) % len(kinds)]
            size = record_bytes
            if kind == "record_16mib":
                huge += 1
                size = record_bytes if huge <= MAX_HUGE else max_bytes + 1
            bad[i] = kind
            value = malformed(kind, wl, i, max_bytes, size)
            records.append((str(i).encode(), value, [("lt.kind", kind.encode())]))
        else:
            records.append((str(i).encode(), wl.value(i), []))
    return records, bad


def dlq_series() -> int:
    """Series of ``wavegraph_dlq_events_total`` in this process (label sets seen so far)."""
    return sum(
        1
        for family in metrics.REGISTRY.collect()
        if family.name == "wavegraph_dlq_events"
        for sample in family.samples
        if sample.name == "wavegraph_dlq_events_total"
    )


async def run_bad_input(settings: Settings, plan: BadInputPlan) -> dict[str, Any]:
    scope = new_scope(settings, "badinput")
    wl = scope.workload
    max_bytes = settings.runtime.max_event_bytes
    # the largest record the topic takes, less room for the record's framing and headers
    record_bytes = settings.kafka.max_message_bytes - 16_384
    records, bad = stream(wl, plan.events, plan.malformed_pct, max_bytes, record_bytes)
    started = time.monotonic()
    async with scope_topics(scope):
        await publish_records(settings.kafka, scope.topic, records)
        async with (
            LagProbe(settings.kafka, scope.group, scope.topic, scope.partitions) as lag,
            inline_worker(scope.settings) as worker,
        ):
            drain_s = await lag.wait_drained(plan.timeout_s)
            alive = worker.alive
        letters = await read_dead_letters(scope, len(bad), timeout_s=30.0)
    valid = [i for i in range(plan.events) if i not in bad]
    check = await verify_run(scope.settings.neo4j, wl, valid, cleanup=plan.cleanup)
    foreign = await verify_run(
        scope.settings.neo4j, EdgeWorkload(f"{wl.tenant}-unknown", wl.run), [], cleanup=plan.cleanup
    )
    return _report(
        plan,
        bad,
        letters,
        check.as_dict(),
        foreign.unexpected,
        drain_s,
        time.monotonic() - started,
        max_bytes,
        alive,
    )


async def read_dead_letters(scope: Scope, expected: int, timeout_s: float) -> dict[int, dict[str, str]]:
    """Sequence number → ``wg.dlq.*`` headers (plus ``kind``) of every record on the scope's DLQ."""
    consumer = make_consumer(scope.settings.kafka)
    await consumer.start()
    try:
        parts = [TopicPartition(scope.dlq, p) for p in range(scope.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        total = sum(ends.values())
        out: dict[int, dict[str, str]] = {}
        seen = 0
        deadline = time.monotonic() + timeout_s
        while seen < total and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for rec in batch:
                    seen += 1
                    headers = parse_dlq_headers(rec.headers)
                    headers["kind"] = dict(rec.headers).get("lt.kind", b"").decode()
                    out[int(rec.key or b"-1")] = headers
        return out
    finally:
        await consumer.stop()


def _report(
    plan: BadInputPlan,
    bad: dict[int, str],
    letters: dict[int, dict[str, str]],
    check: dict[str, Any],
    foreign_edges: int,
    drain_s: float,
    elapsed_s: float,
    max_bytes: int,
    alive: bool = True,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for kind, words in KINDS.items():
        sent = [i for i, k in bad.items() if k == kind]
        got = [letters[i] for i in sent if i in letters]
        rows.append(
            {
                "kind": kind,
                "sent": len(sent),
                "in_dlq": len(got),
                "reason_ok": sum(words in h.get("reason", "") for h in got),
                "example_reason": got[0].get("reason", "")[:120] if got else None,
            }
        )
    wrong = [i for i in letters if i not in bad]
    params = {"events": plan.events, "malformed_pct": plan.malformed_pct, "max_event_bytes": max_bytes}
    report = build_report("chaos_bad_input", params, rows, None)
    report.update(
        malformed=len(bad),
        dead_letters=len(letters),
        malformed_missing_from_dlq=sum(i not in letters for i in bad),
        valid_in_dlq=len(wrong),
        reasons_ok=sum(r["reason_ok"] for r in rows),
        dlq_processors=dict(Counter(h.get("processor", "") for h in letters.values())),
        valid=check["expected"],
        lost=check["lost"],
        duplicates=check["duplicates"],
        graph=check,
        unknown_tenant_edges=foreign_edges,
        drain_s=round(drain_s, 2),
        elapsed_s=round(elapsed_s, 2),
        processor_alive=alive,
        dlq_metric_series=dlq_series(),
        dlq_codes=dict(Counter(h.get("code", "") for h in letters.values())),
    )
    checks = {
        "every malformed event is a dead letter": report["malformed_missing_from_dlq"] == 0,
        "every dead letter names its reason": report["reasons_ok"] == len(bad),
        "no valid event is a dead letter": report["valid_in_dlq"] == 0,
        "nothing of the unknown tenant in Neo4j": foreign_edges == 0,
        "the processor is still running": alive,
        "dead-letter metric series bounded by the reason codes": report["dlq_metric_series"] <= len(CODES),
        **graph_ok(check),
    }
    return with_checks(report, checks)
