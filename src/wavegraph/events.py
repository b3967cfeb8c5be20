"""Event contracts: the versioned topics, their schemas, deterministic ids, and validation.

Every event carries a ``tenant`` and a deterministic id so that every sink can be idempotent
(Cypher ``MERGE``, SQL ``ON CONFLICT``). JSON events are validated with pydantic (its Rust core
parses and validates in one pass); audio travels as raw bytes with its metadata in Kafka headers.
The stream runtime decodes edge records a batch at a time with :class:`EdgeBatchDecoder` (msgspec),
which accepts exactly what :class:`EdgeEvent` accepts and leaves every refusal (and its reason) to the
pydantic model, the schema of record. It yields :class:`DecodedEdge` structs, not pydantic models: the
same values, ids, keys and precedence as the :class:`EdgeEvent` of the same document, read through the
same attributes (:class:`EdgeLike`, what the edge sinks read); :meth:`DecodedEdge.to_event` gives the
model where one is needed.
``wavegraph.events.export_json_schemas()`` writes a JSON Schema per event for producers in other
languages; ``docs/events.md`` documents them.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Protocol

import msgspec
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


class _EdgeIdentity:
    """What :class:`EdgeEvent` and :class:`DecodedEdge` derive from their fields alike: the edge's key,
    its record's key and the precedence of its events (one definition for both)."""

    __slots__ = ()

    @property
    def edge_key(self: EdgeLike) -> str:
        """Identity of the edge itself (not of the event): (tenant, src, rel, dst)."""
        return stable_id(self.tenant, self.src, self.rel, self.dst)

    @property
    def record_key(self: EdgeLike) -> bytes:
        """The Kafka key of this event's record: :func:`edge_record_key`."""
        return edge_record_key(self.tenant, self.src, self.rel, self.dst)

    @property
    def precedence(self: EdgeLike) -> tuple[float, bool, str, float]:
        """The order in which events of one edge win, whatever order they arrive in: the newer ``ts``;
        at equal ``ts`` a delete beats an upsert; then the larger event id; then the larger weight (two
        events without a producer id and equal ``ts`` and ``op`` share their default id)."""
        return (self.ts, self.op == "delete", self.event_id, self.weight)


class EdgeEvent(_EdgeIdentity, _Event):
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
        return self.given_id or default_event_id(self)

    def __eq__(self, other: object) -> bool:
        """Equal when the content and the (given or computed) event id agree."""
        if not isinstance(other, EdgeEvent):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.event_id)


PropScalar = str | int | float | bool
Op = Literal["upsert", "delete"]


class EdgeLike(Protocol):
    """What the edge sinks read of an edge event: :class:`EdgeEvent` and :class:`DecodedEdge` alike."""

    @property
    def tenant(self) -> str: ...
    @property
    def src(self) -> str: ...
    @property
    def dst(self) -> str: ...
    @property
    def rel(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def ts(self) -> float: ...
    @property
    def op(self) -> Op: ...
    @property
    def given_id(self) -> str: ...
    @property
    def props(self) -> Mapping[str, PropScalar]: ...
    @property
    def event_id(self) -> str: ...
    @property
    def edge_key(self) -> str: ...
    @property
    def record_key(self) -> bytes: ...
    @property
    def precedence(self) -> tuple[float, bool, str, float]: ...


def default_event_id(event: EdgeLike) -> str:
    """The id of an edge event whose producer gave none: ``id(tenant, src, rel, dst, ts, op)``."""
    return stable_id(event.tenant, event.src, event.rel, event.dst, event.ts, event.op)


def edge_record_key(tenant: str, src: str, rel: str, dst: str) -> bytes:
    """The Kafka key of an edge record: the edge key ``id(tenant, src, rel, dst)`` as ASCII hex, so all
    events of one edge share a partition (and keep their order) whoever produces them: the HTTP API,
    ``wavegraph produce edges`` and any producer that follows ``docs/events.md``."""
    return stable_id(tenant, src, rel, dst).encode()


class Segment(_Event):
    start_s: float = Field(ge=0.0)
    end_s: float = Field(ge=0.0)
    text: str


class WindowCursor(_Event):
    """Where a window's audio came from and where its stream stands after it (the transcription sink's
    stream cursor, :mod:`wavegraph.processors.audio.cursor`): the first and last chunk ``seq`` of the
    window, then the position after it (``next_seq``, ``skip`` samples of it already transcribed, the
    stream time ``start_s`` and index ``next_window`` of the next window, ``final`` once the stream ended).
    """

    first_seq: int = Field(ge=0, le=INT64_MAX)
    last_seq: int = Field(ge=0, le=INT64_MAX)
    next_seq: int = Field(ge=0, le=INT64_MAX)
    skip: int = Field(ge=0, le=INT64_MAX)
    start_s: float = Field(ge=0.0, allow_inf_nan=False)
    next_window: int = Field(ge=0, le=INT64_MAX)
    final: bool = False


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
    # Optional (absent in events published before it existed, which stay valid): the stream cursor the
    # transcription sink stores with the window (``embeddings.metadata``: first/last seq and position), so
    # that ``wavegraph replay --target postgres`` can rebuild those rows from the topic alone. It takes no
    # part in ``event_id``.
    cursor: WindowCursor | None = None

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


# --- decoding a batch at a time ----------------------------------------------------------------
#
# The same contract as EdgeEvent, in msgspec's terms: lengths, ranges and types are checked while the
# JSON is parsed (in C); the two regular expressions and the NUL rule are checked around it (below).

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_PropKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PROP_KEY)]
_Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]  # msgspec refuses NaN, ±Infinity and 1e400
_Props = Annotated[dict[_PropKey, str | _Int64 | float | bool], msgspec.Meta(max_length=MAX_PROPS)]


class DecodedEdge(
    _EdgeIdentity, msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True, gc=False
):
    """A valid ``wavegraph.edges.v1`` event as :class:`EdgeBatchDecoder` yields it: the msgspec struct the
    JSON was decoded into, read as an :class:`EdgeEvent` is (:class:`EdgeLike`).

    The fields are :class:`EdgeEvent`'s, in its order, with its defaults (``given_id`` is the document's
    ``event_id``); ``event_id``, ``edge_key``, ``record_key`` and ``precedence`` are the model's.
    Immutable; equal to (and hashed like) an :class:`EdgeEvent` or a ``DecodedEdge`` of the same content
    and id. Out of the cyclic garbage collector: it holds strings, numbers and a dict of scalars, never a
    cycle. A value of this type is only valid when the decoder accepted it (constructing one checks
    nothing); :meth:`to_event` gives the pydantic model.
    """

    tenant: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    src: _Text
    dst: _Text
    rel: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "LINKS"
    weight: _NonNegative = 1.0
    ts: _NonNegative
    op: Op = "upsert"
    given_id: Annotated[str, msgspec.Meta(max_length=128)] = msgspec.field(default="", name="event_id")
    props: _Props = {}

    @property
    def event_id(self) -> str:
        """The producer's id, else ``id(tenant, src, rel, dst, ts, op)`` (computed at each read: a
        struct out of the collector has no room for a cache, and the counting path never reads it)."""
        return self.given_id or default_event_id(self)

    def to_event(self) -> EdgeEvent:
        """The :class:`EdgeEvent` of this event, with its own ``props`` (built without validating again:
        see :func:`_edge_event`)."""
        return _edge_event(self, own_props=True)

    @classmethod
    def from_event(cls, event: EdgeEvent) -> DecodedEdge:
        """The struct of a validated :class:`EdgeEvent` (the decoder's slow path)."""
        return cls(
            tenant=event.tenant,
            src=event.src,
            dst=event.dst,
            rel=event.rel,
            weight=event.weight,
            ts=event.ts,
            op=event.op,
            given_id=event.given_id,
            props=dict(event.props),
        )

    def __eq__(self, other: object) -> bool:
        """As :meth:`EdgeEvent.__eq__`: the content and the (given or computed) event id agree."""
        if isinstance(other, DecodedEdge | EdgeEvent):
            return _content(self) == _content(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.event_id)


def _content(event: EdgeLike) -> tuple[object, ...]:
    """What ``EdgeEvent.model_dump()`` holds, in its order."""
    e = event
    return (e.tenant, e.src, e.dst, e.rel, e.weight, e.ts, e.op, e.props, e.event_id)


_TENANT = re.compile(r"[A-Za-z0-9_.-]+").fullmatch  # EdgeEvent's patterns; fullmatch = Rust's ^...$
_REL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").fullmatch
_MEMO = 4096  # distinct tenants / relationship types remembered as valid (a hostile stream cannot grow it)
# Each value becomes a one-element array: ``[[v0]\n,[v1]\n,...]``. See EdgeBatchDecoder.
_OPEN, _SEP, _CLOSE = b"[[", b"]\n,[", b"]]"
_NUL_ESCAPE = b"\\u0000"
_BACKSLASH = b"\\"


class _AllFields(set[str]):
    """``model_fields_set`` of every event the fast path builds: all of :class:`EdgeEvent`'s fields, in
    one set shared by those events and therefore read-only (a change raises ``TypeError``). Pydantic's
    copies (``model_copy``, ``copy``, ``deepcopy``, pickling) turn it into a plain, private ``set``."""

    def _read_only(self, *_: object) -> NoReturn:
        raise TypeError("the fields set of a decoded EdgeEvent is shared and read-only")

    add = discard = remove = pop = clear = _read_only
    update = intersection_update = difference_update = symmetric_difference_update = _read_only
    __ior__ = __iand__ = __isub__ = __ixor__ = _read_only

    def __copy__(self) -> set[str]:
        return set(self)

    def __deepcopy__(self, memo: object) -> set[str]:
        return set(self)

    def __reduce__(self) -> tuple[type[set[str]], tuple[list[str]]]:
        return set, (list(self),)


_ALL_FIELDS = _AllFields(EdgeEvent.model_fields)
_new = object.__new__
_asdict = msgspec.structs.asdict
# The four slots every pydantic model has, set through their descriptors: what model_construct and
# pydantic-core's validator set, at a fraction of ``object.__setattr__``'s cost a call.
_put_dict = BaseModel.__dict__["__dict__"].__set__
_put_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_put_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_put_private = BaseModel.__dict__["__pydantic_private__"].__set__


class EdgeBatchDecoder:
    """Decodes many ``wavegraph.edges.v1`` values in one msgspec call; same verdicts as :func:`decode_edge`.

    :meth:`decode` returns the accepted events as :class:`DecodedEdge` structs, in order, and the
    refusals by index; :meth:`decode_one` returns one :class:`EdgeEvent`. A value is accepted here only
    when every rule of :class:`EdgeEvent` holds, with the values pydantic would give it (same field
    values and types, same ``event_id``); anything else (a bad value, a NUL escape, a value over
    ``max_bytes``, a tenant or ``rel`` outside its pattern) is decoded again by :func:`decode_edge`,
    whose verdict and reason stand. So this decoder can be slower than the model on a bad batch, but
    never more lenient. With ``tenants``, a valid event of another tenant is refused as
    ``unknown_tenant``.

    Framing: the values are joined as ``[[v0]\\n,[v1]\\n,...]`` and decoded as a list of one-element
    arrays. The decode counts as the batch's only when it yields exactly one element per value; that
    holds only if element *i* is value *i*'s bytes. The separator's ``]`` and ``[`` cannot sit inside a
    string (a raw newline follows them, which no JSON string may hold), and an edge event has no array
    anywhere, so every bracket outside a string is a frame: a value holding one (``{..}],[{..}``) adds an
    element, never hides one, and any other way two values could merge leaves the brackets unbalanced.
    """

    def __init__(self, max_bytes: int, tenants: frozenset[str] = frozenset()) -> None:
        self.max_bytes = max_bytes
        self.tenants = tenants
        self._many = msgspec.json.Decoder(list[tuple[DecodedEdge]])
        self._one = msgspec.json.Decoder(DecodedEdge)
        # Tenants accepted without a second look: the known ones that match the pattern, or (when any
        # tenant is welcome) those seen so far; any other tenant takes the slow path.
        self._tenants = {t for t in tenants if len(t) <= 64 and _TENANT(t)}
        self._rels = {"LINKS"}

    def decode(self, values: Sequence[bytes | None]) -> tuple[list[DecodedEdge], dict[int, InvalidEvent]]:
        """The events of ``values`` that are valid (in order) and the refusals by index into ``values``."""
        if not values:
            return [], {}
        try:
            body = _SEP.join(values)  # type: ignore[arg-type]  # a None value raises TypeError
        except TypeError:
            return self._each(values)
        # A NUL escape needs a backslash, which most batches do not hold (a one-byte search: memchr); a
        # body within max_bytes holds no value over it.
        if (_BACKSLASH in body and _NUL_ESCAPE in body) or (
            len(body) > self.max_bytes and max(map(len, values)) > self.max_bytes  # type: ignore[arg-type]
        ):
            return self._each(values)
        try:
            framed = self._many.decode(b"".join((_OPEN, body, _CLOSE)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._each(values)
        if len(framed) != len(values):
            return self._each(values)
        events = [edge for (edge,) in framed]
        tenants, rels = self._tenants, self._rels
        for edge in events:  # the two patterns msgspec cannot check; a miss takes the slow path below
            if not (
                (edge.tenant in tenants or self._tenant_ok(edge.tenant))
                and (edge.rel in rels or self._rel_ok(edge.rel))
            ):
                return self._recheck(values, events)
        return events, {}

    def decode_one(self, value: bytes | None) -> EdgeEvent:
        """One value: the event, or :class:`InvalidEvent` with :func:`decode_edge`'s reason."""
        edge = self._fast(value)
        return self._slow(value) if edge is None else _edge_event(edge)

    def _fast(self, value: bytes | None) -> DecodedEdge | None:
        """The struct of ``value`` when msgspec and the two patterns accept it, else ``None``."""
        if value is not None and len(value) <= self.max_bytes and _NUL_ESCAPE not in value:
            try:
                edge = self._one.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return None
            if (edge.tenant in self._tenants or self._tenant_ok(edge.tenant)) and (
                edge.rel in self._rels or self._rel_ok(edge.rel)
            ):
                return edge
        return None

    def _slow(self, value: bytes | None) -> EdgeEvent:
        """The model's verdict, then the tenant's."""
        event = decode_edge(value, self.max_bytes)
        if self.tenants and event.tenant not in self.tenants:
            raise InvalidEvent(f"tenant: unknown tenant {event.tenant!r}", "unknown_tenant")
        return event

    def _recheck(
        self, values: Sequence[bytes | None], framed: list[DecodedEdge]
    ) -> tuple[list[DecodedEdge], dict[int, InvalidEvent]]:
        """A decoded batch with a tenant or ``rel`` outside the fast sets: those values go to the model."""
        events: list[DecodedEdge] = []
        errors: dict[int, InvalidEvent] = {}
        for i, edge in enumerate(framed):
            if (edge.tenant in self._tenants or self._tenant_ok(edge.tenant)) and (
                edge.rel in self._rels or self._rel_ok(edge.rel)
            ):
                events.append(edge)
                continue
            try:
                events.append(DecodedEdge.from_event(self._slow(values[i])))
            except InvalidEvent as exc:
                errors[i] = exc
        return events, errors

    def _each(self, values: Sequence[bytes | None]) -> tuple[list[DecodedEdge], dict[int, InvalidEvent]]:
        events: list[DecodedEdge] = []
        errors: dict[int, InvalidEvent] = {}
        for i, value in enumerate(values):
            edge = self._fast(value)
            if edge is None:
                try:
                    edge = DecodedEdge.from_event(self._slow(value))
                except InvalidEvent as exc:
                    errors[i] = exc
                    continue
            events.append(edge)
        return events, errors

    def _tenant_ok(self, tenant: str) -> bool:
        if self.tenants:  # not a known tenant: the slow path says why
            return False
        ok = _TENANT(tenant) is not None
        if ok and len(self._tenants) < _MEMO:
            self._tenants.add(tenant)
        return ok

    def _rel_ok(self, rel: str) -> bool:
        ok = _REL(rel) is not None
        if ok and len(self._rels) < _MEMO:
            self._rels.add(rel)
        return ok


def _edge_event(wire: DecodedEdge, own_props: bool = False) -> EdgeEvent:
    """The :class:`EdgeEvent` of an already validated ``wire``: ``EdgeEvent.model_construct(**fields)``
    with every field given (``__dict__`` in field order, every field set, no extra, no private state),
    without its per-field alias search, which would cost more than the decoding. The fields set is the
    shared read-only :data:`_ALL_FIELDS` (``model_fields_set``; nothing in wavegraph reads it). With
    ``own_props`` the event gets a copy of ``wire``'s props instead of the same dict."""
    event = _new(EdgeEvent)
    fields = _asdict(wire)
    if own_props:
        fields["props"] = dict(wire.props)
    _put_dict(event, fields)
    _put_fields_set(event, _ALL_FIELDS)
    _put_extra(event, None)
    _put_private(event, None)
    return event


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
