"""Event contracts: the versioned topics, their schemas, deterministic ids, and validation.

Every event carries a ``tenant`` and a deterministic id so that every sink can be idempotent
(Cypher ``MERGE``, SQL ``ON CONFLICT``). JSON events are validated with pydantic (its Rust core
parses and validates in one pass); audio travels as raw bytes with its metadata in Kafka headers.
``wavegraph.events.export_json_schemas()`` writes a JSON Schema per event for producers in other
languages; ``docs/events.md`` documents them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    computed_field,
    model_validator,
)

from wavegraph.errors import InvalidEvent

SCHEMA_VERSION = 1

# What every sink can store. Neo4j and PostgreSQL hold signed 64-bit integers, finite floats, and
# strings without NUL (PostgreSQL's text refuses U+0000); an event outside that is refused here, at the
# edge, with the field named, instead of failing a batch write later.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_PROPS = 64
MAX_PROP_KEY = 128


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character (U+0000), which PostgreSQL and Kafka headers cannot hold")
    return value


Tenant = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
NodeId = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
RelType = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
StreamId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_nul)]
PropKey = Annotated[str, Field(min_length=1, max_length=MAX_PROP_KEY), AfterValidator(_no_nul)]


def _prop_value(value: object) -> str | int | float | bool:
    """A property value a sink can store: a NUL-free string, an int64, a finite float or a boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("integer outside the signed 64-bit range that Neo4j and PostgreSQL store")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinite numbers cannot be stored")
        return value
    if isinstance(value, str):
        return _no_nul(value)
    raise ValueError("must be a string, a number or a boolean (nested objects and lists are not stored)")


PropValue = Annotated[
    str | int | float | bool,
    PlainValidator(_prop_value, json_schema_input_type=str | int | float | bool),
]


def stable_id(*parts: object) -> str:
    """A deterministic 32-hex-digit id: sha256 over the parts joined by the unit separator."""
    joined = "\x1f".join(map(str, parts)).encode()
    return hashlib.sha256(joined).hexdigest()[:32]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class EdgeEvent(_Event):
    """A directed, typed, weighted edge ``src -[rel]-> dst`` of a tenant's graph (``wavegraph.edges.v1``).

    ``op = "delete"`` removes the edge. ``event_id`` defaults to a hash of
    (tenant, src, rel, dst, ts, op), so a replayed event keeps its id.
    """

    tenant: Tenant
    src: NodeId
    dst: NodeId
    rel: RelType = "LINKS"
    weight: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    ts: float = Field(ge=0.0, allow_inf_nan=False, description="event time, seconds since the epoch")
    op: Literal["upsert", "delete"] = "upsert"
    given_id: Annotated[str, Field(max_length=128), AfterValidator(_no_nul)] = Field(
        "", alias="event_id", exclude=True
    )
    props: dict[PropKey, PropValue] = Field(default_factory=dict, max_length=MAX_PROPS)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def event_id(self) -> str:
        """The producer's id, else ``id(tenant, src, rel, dst, ts, op)``; computed on first use (hot path)."""
        return self.given_id or stable_id(self.tenant, self.src, self.rel, self.dst, self.ts, self.op)

    def __eq__(self, other: object) -> bool:
        """Equal when the content and the (given or computed) event id agree."""
        if not isinstance(other, EdgeEvent):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.event_id)

    @property
    def edge_key(self) -> str:
        """Identity of the edge itself (not of the event): (tenant, src, rel, dst)."""
        return stable_id(self.tenant, self.src, self.rel, self.dst)

    @property
    def record_key(self) -> bytes:
        """The Kafka key of this event's record: :func:`edge_record_key`."""
        return edge_record_key(self.tenant, self.src, self.rel, self.dst)

    @property
    def precedence(self) -> tuple[float, bool, str, float]:
        """The order in which events of one edge win, whatever order they arrive in: the newer ``ts``;
        at equal ``ts`` a delete beats an upsert; then the larger event id; then the larger weight (two
        events without a producer id and equal ``ts`` and ``op`` share their default id)."""
        return (self.ts, self.op == "delete", self.event_id, self.weight)


def edge_record_key(tenant: str, src: str, rel: str, dst: str) -> bytes:
    """The Kafka key of an edge record: the edge key ``id(tenant, src, rel, dst)`` as ASCII hex, so all
    events of one edge share a partition (and keep their order) whoever produces them: the HTTP API,
    ``wavegraph produce edges`` and any producer that follows ``docs/events.md``."""
    return stable_id(tenant, src, rel, dst).encode()


class Segment(_Event):
    start_s: float = Field(ge=0.0)
    end_s: float = Field(ge=0.0)
    text: str


class TranscriptEvent(_Event):
    """One transcribed window of an audio stream (``wavegraph.transcripts.v1``)."""

    tenant: Tenant
    stream_id: StreamId
    window: int = Field(ge=0)
    start_s: float = Field(ge=0.0)
    end_s: float = Field(ge=0.0)
    text: str
    segments: list[Segment]
    model: str
    device: str
    processing_ms: float = Field(ge=0.0)
    xrt: float = Field(ge=0.0)
    event_id: str = ""

    @model_validator(mode="after")
    def _fill_id(self) -> TranscriptEvent:
        if not self.event_id:
            object.__setattr__(self, "event_id", stable_id(self.tenant, self.stream_id, self.window))
        return self


class NodeEvent(_Event):
    """A node's analytics after a graph update (``wavegraph.nodes.v1``)."""

    tenant: Tenant
    node: NodeId
    pagerank: float = Field(ge=0.0, allow_inf_nan=False)
    embedding_version: int = Field(ge=0)
    event_id: str = ""

    @model_validator(mode="after")
    def _fill_id(self) -> NodeEvent:
        if not self.event_id:
            object.__setattr__(self, "event_id", stable_id(self.tenant, self.node, self.embedding_version))
        return self


# --- audio: raw bytes + headers -----------------------------------------------------------------

AUDIO_HEADER_KEYS = ("tenant", "stream_id", "seq", "sample_rate", "channels", "encoding", "eos")


class AudioMeta(_Event):
    """Metadata of one audio chunk on ``wavegraph.audio.v1``, carried in Kafka headers.

    The record value is WAV bytes (``encoding = "wav"``) or raw little-endian 16-bit PCM
    (``encoding = "pcm_s16le"``, with ``sample_rate`` and ``channels``). ``eos = true`` marks the
    end of the stream (its value may be empty).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    tenant: Tenant
    stream_id: StreamId
    seq: int = Field(ge=0, le=INT64_MAX)
    sample_rate: int = Field(16000, ge=8000, le=48000)
    channels: int = Field(1, ge=1, le=2)
    encoding: Literal["wav", "pcm_s16le"] = "pcm_s16le"
    eos: bool = False

    @property
    def event_id(self) -> str:
        return stable_id(self.tenant, self.stream_id, self.seq)

    def to_headers(self) -> list[tuple[str, bytes]]:
        return [
            (k, str(getattr(self, k)).lower().encode() if k == "eos" else str(getattr(self, k)).encode())
            for k in AUDIO_HEADER_KEYS
        ]


def audio_meta_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> AudioMeta:
    """Parse audio headers; raise :class:`InvalidEvent` naming the missing or bad header."""
    values: dict[str, Any] = {}
    for key, raw in headers or ():
        if key in AUDIO_HEADER_KEYS:
            try:
                values[key] = raw.decode()
            except (UnicodeDecodeError, AttributeError):
                raise InvalidEvent(f"header {key}: not UTF-8", "bad_header") from None
    if "eos" in values:
        values["eos"] = values["eos"] in ("true", "1", "yes")
    try:
        return AudioMeta.model_validate(values)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc, prefix="header "), "bad_header") from None


# --- dead letters --------------------------------------------------------------------------------

DLQ_HEADER_PREFIX = "wg.dlq."


def dlq_headers(
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    processor: str,
    original: Iterable[tuple[str, bytes]] | None = None,
) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: the original value is the record's value, unchanged.

    ``wg.dlq.topic``, ``wg.dlq.partition``, ``wg.dlq.offset``, ``wg.dlq.reason``, ``wg.dlq.processor``,
    followed by the original record's headers.
    """
    meta = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "reason": reason,
        "processor": processor,
    }
    out = [(f"{DLQ_HEADER_PREFIX}{k}", str(v).encode()) for k, v in meta.items()]
    out.extend(original or ())
    return out


def parse_dlq_headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """The ``wg.dlq.*`` headers of a dead letter as a dict without the prefix."""
    return {k[len(DLQ_HEADER_PREFIX) :]: v.decode() for k, v in headers if k.startswith(DLQ_HEADER_PREFIX)}


# --- decoding ------------------------------------------------------------------------------------


def decode_edge(value: bytes | None, max_bytes: int) -> EdgeEvent:
    """Validate one ``wavegraph.edges.v1`` value; raise :class:`InvalidEvent` with field and problem."""
    if value is None:
        raise InvalidEvent("empty record value", "empty")
    if len(value) > max_bytes:
        raise InvalidEvent(f"oversized: {len(value)} bytes > limit {max_bytes}", "oversized")
    try:
        return EdgeEvent.model_validate_json(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        code = "bad_json" if errors and errors[0]["type"] == "json_invalid" else "invalid_event"
        raise InvalidEvent(_describe(exc), code) from None


def encode(event: BaseModel) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def _describe(exc: ValidationError, prefix: str = "") -> str:
    """``field: problem`` for the first errors; one line per field (a union's alternatives collapse)."""
    parts: list[str] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            parts.append(f"bad JSON: {err['msg']}")
            break
        loc = ".".join(str(p) for p in err["loc"] if not _is_union_branch(p)) or "(body)"
        if loc in seen:
            continue
        seen.add(loc)
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{prefix}{_clip(loc)}: {msg}")
        if len(parts) == 5:
            break
    return "; ".join(parts)


def _is_union_branch(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _clip(loc: str, limit: int = 160) -> str:
    """A location as written by the producer, cut so a hostile 1 MiB key cannot make a 1 MiB reason."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in loc[:limit])
    return shown if len(loc) <= limit else f"{shown}…"


EVENT_SCHEMAS: Mapping[str, type[BaseModel]] = {
    "wavegraph.edges.v1": EdgeEvent,
    "wavegraph.transcripts.v1": TranscriptEvent,
    "wavegraph.nodes.v1": NodeEvent,
    "wavegraph.audio.v1.headers": AudioMeta,
}


def export_json_schemas(directory: Path) -> list[Path]:
    """Write one JSON Schema file per event to ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in EVENT_SCHEMAS.items():
        path = directory / f"{name}.schema.json"
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"https://wavegraph.dev/schemas/{name}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        paths.append(path)
    return paths
