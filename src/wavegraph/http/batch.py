"""Parsing an ingest body into edge events: a JSON array, one JSON object, or NDJSON.

Every event goes through :func:`wavegraph.events.decode_edge`, the same validation the edge processor
applies to Kafka records, so a reason reads the same in a 422 and in the dead-letter topic.

``line`` in a :class:`LineError` is 1-based: the physical line for NDJSON (blank lines count, and are
skipped), the position of the event in the array for a JSON array, 1 for a single object, and the
line the JSON decoder stopped at for a body that is not JSON at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pydantic_core

from wavegraph.errors import InvalidEvent
from wavegraph.events import EdgeEvent, decode_edge

NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
JSON_TYPES = frozenset({"application/json", ""})
MAX_REPORTED = 20  # errors listed in one answer; ``invalid`` counts them all

_JSON_POSITION = re.compile(r"at line (\d+) column \d+")
_NOT_A_FIELD = ("bad JSON", "oversized", "empty record value", "(body)")


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str
    field: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass
class ParsedBatch:
    events: list[tuple[int, EdgeEvent]] = field(default_factory=list)  # (line, event)
    errors: list[LineError] = field(default_factory=list)
    invalid: int = 0

    def reject(self, error: LineError) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(error)


def media_type(content_type: str | None) -> str:
    """``application/x-ndjson; charset=utf-8`` → ``application/x-ndjson``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media in JSON_TYPES or media.endswith("+json")


def field_of(reason: str) -> str | None:
    """The field a :class:`InvalidEvent` reason starts with (``"src: Field required"`` → ``"src"``)."""
    head = reason.split(": ", 1)[0]
    if ": " not in reason or head.startswith(_NOT_A_FIELD):
        return None
    return head


def parse_ndjson(body: bytes, max_event_bytes: int) -> ParsedBatch:
    batch = ParsedBatch()
    for number, raw in enumerate(body.split(b"\n"), start=1):
        line = raw.rstrip(b"\r")
        if not line.strip():
            continue
        _decode(batch, number, line, max_event_bytes)
    return batch


def parse_json(body: bytes, max_event_bytes: int) -> ParsedBatch:
    """Parse a JSON body with exact integers (orjson would turn one beyond 64 bits into a float and
    so change the value silently); each event is then validated like a Kafka record."""
    batch = ParsedBatch()
    try:
        doc = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        where = _JSON_POSITION.search(str(exc))
        lineno = int(where.group(1)) if where else 1
        batch.reject(LineError(lineno, f"bad JSON: {exc}"))
        return batch
    if isinstance(doc, dict):
        items: list[object] = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        batch.reject(LineError(1, "(body): expected an edge event object or an array of them"))
        return batch
    for number, item in enumerate(items, start=1):
        _decode(batch, number, pydantic_core.to_json(item), max_event_bytes)
    return batch


def _decode(batch: ParsedBatch, number: int, value: bytes, max_event_bytes: int) -> None:
    try:
        batch.events.append((number, decode_edge(value, max_event_bytes)))
    except InvalidEvent as exc:
        batch.reject(LineError(number, exc.reason, field_of(exc.reason)))
