"""Event contracts: the versioned topics, their schemas, deterministic ids, and validation.

Every event carries a ``tenant`` and a deterministic id so that every sink can be idempotent
(Cypher ``MERGE``, SQL ``ON CONFLICT``). JSON events are validated with pydantic (its Rust core
parses and validates in one pass); audio travels as raw bytes with its metadata in Kafka headers.
``wavegraph.events.export_json_schemas()`` writes a JSON Schema per event for producers in other
languages; ``docs/events.md`` documents them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, model_validator

from wavegraph.errors import InvalidEvent

SCHEMA_VERSION = 1

Tenant = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
NodeId = Annotated[str, Field(min_length=1, max_length=256)]
RelType = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


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
    given_id: str = Field("", alias="event_id", max_length=128, exclude=True)
    props: dict[str, str | int | float | bool] = Field(default_factory=dict)

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


class Segment(_Event):
    start_s: float = Field(ge=0.0)
    end_s: float = Field(ge=0.0)
    text: str


class TranscriptEvent(_Event):
    """One transcribed window of an audio stream (``wavegraph.transcripts.v1``)."""

    tenant: Tenant
    stream_id: str = Field(min_length=1, max_length=128)
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
    pagerank: float = Field(ge=0.0)
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
    stream_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)
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
            except UnicodeDecodeError:
                raise InvalidEvent(f"header {key}: not UTF-8") from None
    if "eos" in values:
        values["eos"] = values["eos"] in ("true", "1", "yes")
    try:
        return AudioMeta.model_validate(values)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc, prefix="header ")) from None


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
        raise InvalidEvent("empty record value")
    if len(value) > max_bytes:
        raise InvalidEvent(f"oversized: {len(value)} bytes > limit {max_bytes}")
    try:
        return EdgeEvent.model_validate_json(value)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from None


def encode(event: BaseModel) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def _describe(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        if err["type"] == "json_invalid":
            parts.append(f"bad JSON: {err['msg']}")
        else:
            parts.append(f"{prefix}{loc}: {err['msg']}")
    return "; ".join(parts)


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
