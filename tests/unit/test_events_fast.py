"""The batch decoder builds each valid event as ``EdgeEvent.model_construct`` would, without validating
again, and the result equals what ``EdgeEvent.model_validate`` makes of the same document.

``model_validate`` (the Python document) and ``model_validate_json`` (the bytes) are both compared:
field values with their types and order, the given or computed ``event_id``, the dumps, ``repr``,
hash, ``edge_key``, ``record_key`` and ``precedence``. The one designed difference is
``model_fields_set``: every field counts as set (``model_construct`` with all fields given), in one
read-only set shared by the decoded events.
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavegraph.events import EdgeBatchDecoder, EdgeEvent, _edge_event, _EdgeWire

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


def seen(event: EdgeEvent) -> tuple[Any, ...]:
    """Everything a reader of the event can observe, except ``model_fields_set``."""
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


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(doc=valid_docs())
def test_a_decoded_event_is_what_model_validate_makes_of_the_document(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    validated = EdgeEvent.model_validate(doc)
    from_json = EdgeEvent.model_validate_json(raw)
    decoded, refused = EdgeBatchDecoder(MAX).decode([raw, raw])
    assert not refused
    fast = decoded[0]
    assert type(fast) is EdgeEvent
    assert seen(fast) == seen(validated) == seen(from_json) == seen(decoded[1])
    assert fast == validated and validated == fast
    given = {k: validated.__dict__[k] for k in EdgeEvent.model_fields}
    given["event_id"] = given.pop("given_id")  # model_construct takes the alias, as validation does
    constructed = EdgeEvent.model_construct(**given)
    assert seen(fast) == seen(constructed)
    assert fast.model_fields_set == constructed.model_fields_set == set(EdgeEvent.model_fields)
    assert validated.model_fields_set <= fast.model_fields_set
    assert fast.model_dump(exclude_unset=True) == constructed.model_dump(exclude_unset=True)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(doc=valid_docs())
def test_one_value_is_built_the_same_way(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    assert seen(EdgeBatchDecoder(MAX).decode_one(raw)) == seen(EdgeEvent.model_validate(doc))


def test_defaults_are_the_models_and_each_event_owns_its_props() -> None:
    raw = b'{"tenant":"acme","src":"a","dst":"b","ts":1}'
    events, _ = EdgeBatchDecoder(MAX).decode([raw, raw])
    assert events[0].__dict__ == {
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
    assert events[0].props is not events[1].props  # a default_factory, not one shared dict


def test_the_shared_fields_set_is_read_only_and_copies_are_private() -> None:
    raw = b'{"tenant":"acme","src":"a","dst":"b","ts":1,"props":{"k":1}}'
    one, two = EdgeBatchDecoder(MAX).decode([raw, raw])[0]
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


def test_the_single_event_builder_matches_the_inlined_loop() -> None:
    import msgspec

    raw = b'{"props":{"b":true,"f":1.5},"ts":2,"dst":"d","src":"s","tenant":"t","op":"delete"}'
    wire = msgspec.json.decode(raw, type=_EdgeWire)
    assert seen(_edge_event(wire)) == seen(EdgeBatchDecoder(MAX).decode([raw])[0][0])
    assert seen(_edge_event(wire)) == seen(EdgeEvent.model_validate_json(raw))
