"""The batch decoder's :class:`DecodedEdge` reads as ``EdgeEvent.model_validate`` of the same document.

Property tests over valid documents: every attribute the edge sinks read (the fields with their types,
the props' types, ``event_id``, ``edge_key``, ``record_key``, ``precedence``), equality and hash both
ways, what the sinks make of it (the Neo4j row, the graph guard's verdict, the edge table's pair
changes), and the model it converts to (``to_event``), compared with ``model_validate`` (the Python
document), ``model_validate_json`` (the bytes) and ``model_construct``. :meth:`EdgeBatchDecoder.decode_one`
still gives an :class:`EdgeEvent` built as ``model_construct`` would; its one designed difference is
``model_fields_set``: every field counts as set, in one read-only set shared by the decoded events.
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavegraph.events import DecodedEdge, EdgeBatchDecoder, EdgeEvent, EdgeLike, _edge_event
from wavegraph.processors.graph_job.edge_table import EdgeTable
from wavegraph.processors.graph_job.guard import GraphGuard
from wavegraph.sinks.neo4j import edge_row

MAX = 1 << 20
no_nul = st.characters(codec="utf-8", exclude_characters="\x00")
timestamps = st.one_of(
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.integers(0, 2**53),
    st.sampled_from([0, 0.0, -0.0, 5e-324, 1.7e9, 1.7e9 + 0.5, 1.7976931348623157e308]),
)
prop_values = st.one_of(
    st.text(no_nul, max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
OPTIONAL = {
    "rel": st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,63}", fullmatch=True),
    "weight": st.one_of(st.floats(min_value=0, max_value=1e300), st.integers(0, 2**53)),
    "op": st.sampled_from(["upsert", "delete"]),
    "event_id": st.text(no_nul, max_size=128),
    "props": st.dictionaries(st.text(no_nul, min_size=1, max_size=16), prop_values, max_size=64),
}


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid edge event: the required fields, any subset of the optional ones, in any order."""
    doc: dict[str, Any] = {
        "tenant": draw(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)),
        "src": draw(st.text(no_nul, min_size=1, max_size=256)),
        "dst": draw(st.text(no_nul, min_size=1, max_size=256)),
        "ts": draw(timestamps),
    }
    for key, strategy in OPTIONAL.items():
        if draw(st.booleans()):
            doc[key] = draw(strategy)
    keys = draw(st.permutations(list(doc)))
    return {k: doc[k] for k in keys}


FIELDS = ("tenant", "src", "dst", "rel", "weight", "ts", "op", "given_id", "props")


def read(event: EdgeLike) -> tuple[Any, ...]:
    """Every attribute a sink reads, with its type (the props' values too)."""
    fields = tuple((k, type(getattr(event, k)).__name__, getattr(event, k)) for k in FIELDS)
    props = tuple((k, type(v).__name__, v) for k, v in event.props.items())
    return fields, props, event.event_id, event.edge_key, event.record_key, event.precedence


def sunk(event: EdgeLike) -> tuple[Any, ...]:
    """What the sinks make of the event: the Neo4j row, the guard's verdict, the edge table's change."""
    table = EdgeTable()
    first = table.apply([event])
    again = table.apply([event])  # the same event again: a tie on everything, decided by the ids
    return (
        edge_row(event),
        GraphGuard(1000).refusal(event),
        GraphGuard(1 << 20).refusal(event),
        vars(first),
        vars(again),
    )


def seen(event: EdgeEvent) -> tuple[Any, ...]:
    """Everything a reader of a model can observe, except ``model_fields_set``."""
    # event_id is a cached property: it joins __dict__ once read, so it is compared on its own.
    typed = tuple((k, type(v).__name__, v) for k, v in event.__dict__.items() if k != "event_id")
    return (
        typed,
        event.event_id,
        event.model_dump(),
        event.model_dump(mode="json"),
        event.model_dump_json(),
        repr(event),
        hash(event),
        event.edge_key,
        event.record_key,
        event.precedence,
        event.__pydantic_extra__,
        event.__pydantic_private__,
    )


def constructed(validated: EdgeEvent) -> EdgeEvent:
    given = {k: validated.__dict__[k] for k in EdgeEvent.model_fields}
    given["event_id"] = given.pop("given_id")  # model_construct takes the alias, as validation does
    return EdgeEvent.model_construct(**given)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(doc=valid_docs())
def test_a_decoded_edge_reads_as_what_model_validate_makes_of_the_document(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    validated = EdgeEvent.model_validate(doc)
    from_json = EdgeEvent.model_validate_json(raw)
    decoded, refused = EdgeBatchDecoder(MAX).decode([raw, raw])
    assert not refused
    fast = decoded[0]
    assert type(fast) is DecodedEdge
    assert read(fast) == read(validated) == read(from_json) == read(decoded[1])
    assert sunk(fast) == sunk(validated)
    assert fast == validated and validated == fast and fast == decoded[1]
    assert hash(fast) == hash(validated)
    assert seen(fast.to_event()) == seen(validated) == seen(constructed(validated))
    assert DecodedEdge.from_event(validated) == fast and read(DecodedEdge.from_event(validated)) == read(fast)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(doc=valid_docs())
def test_one_value_is_the_model_built_as_model_construct_would(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    one = EdgeBatchDecoder(MAX).decode_one(raw)
    validated = EdgeEvent.model_validate(doc)
    assert type(one) is EdgeEvent
    assert seen(one) == seen(validated) == seen(constructed(validated))
    assert one.model_fields_set == set(EdgeEvent.model_fields)
    assert validated.model_fields_set <= one.model_fields_set


def test_defaults_are_the_models_and_each_event_owns_its_props() -> None:
    raw = b'{"tenant":"acme","src":"a","dst":"b","ts":1}'
    events, _ = EdgeBatchDecoder(MAX).decode([raw, raw])
    assert msgspec.structs.asdict(events[0]) == {
        "tenant": "acme",
        "src": "a",
        "dst": "b",
        "rel": "LINKS",
        "weight": 1.0,
        "ts": 1.0,
        "op": "upsert",
        "given_id": "",
        "props": {},
    }
    assert type(events[0].ts) is float and type(events[0].weight) is float
    assert events[0].props is not events[1].props  # a fresh dict each, not one shared default
    model = events[0].to_event()
    assert model.props == events[0].props and model.props is not events[0].props


def test_a_decoded_edge_is_immutable_and_out_of_the_collector() -> None:
    import gc

    raw = b'{"tenant":"acme","src":"a","dst":"b","ts":1,"props":{"k":1}}'
    edge = EdgeBatchDecoder(MAX).decode([raw])[0][0]
    for name in ("src", "event_id", "extra"):
        with pytest.raises(AttributeError):
            setattr(edge, name, "x")
    assert not gc.is_tracked(edge)
    assert edge.event_id == edge.event_id == EdgeEvent.model_validate_json(raw).event_id
    given = EdgeBatchDecoder(MAX).decode([raw[:-1] + b',"event_id":"mine"}'])[0][0]
    assert given.event_id == "mine" and given.given_id == "mine"
    assert given != edge and {edge, given} == {edge.to_event(), given.to_event()}


def test_the_shared_fields_set_is_read_only_and_copies_are_private() -> None:
    raw = b'{"tenant":"acme","src":"a","dst":"b","ts":1,"props":{"k":1}}'
    decoder = EdgeBatchDecoder(MAX)
    one, two = decoder.decode_one(raw), decoder.decode([raw])[0][0].to_event()
    assert one.model_fields_set is two.model_fields_set
    for change in (
        lambda s: s.add("x"),
        lambda s: s.discard("src"),
        lambda s: s.update({"x"}),
        lambda s: s.clear(),
        lambda s: s.pop(),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change(one.model_fields_set)
    fields = one.model_fields_set
    with pytest.raises(TypeError, match="read-only"):
        fields |= {"x"}
    assert one.model_fields_set == set(EdgeEvent.model_fields)
    for clone in (
        one.model_copy(update={"src": "z"}),
        one.model_copy(),
        copy.copy(one),
        copy.deepcopy(one),
        pickle.loads(pickle.dumps(one)),
    ):
        assert type(clone.model_fields_set) is set and clone.model_fields_set == one.model_fields_set
        clone.model_fields_set.add("mine")  # a private set: the decoded events do not see it
    assert "mine" not in one.model_fields_set
    assert pickle.loads(pickle.dumps(one)) == one
    assert one.model_copy(update={"src": "z"}).src == "z" and one.src == "a"


def test_the_model_builder_matches_validation() -> None:
    raw = b'{"props":{"b":true,"f":1.5},"ts":2,"dst":"d","src":"s","tenant":"t","op":"delete"}'
    wire = msgspec.json.decode(raw, type=DecodedEdge)
    assert seen(_edge_event(wire)) == seen(EdgeBatchDecoder(MAX).decode_one(raw))
    assert seen(_edge_event(wire)) == seen(EdgeEvent.model_validate_json(raw))
    assert read(wire) == read(EdgeBatchDecoder(MAX).decode([raw])[0][0])
