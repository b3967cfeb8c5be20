"""EdgeBatchDecoder (msgspec, a batch at a time) gives the same verdicts as the pydantic model.

The model (``decode_edge``) is the schema of record: for every input, the batch decoder accepts exactly
what it accepts, yields a :class:`DecodedEdge` that reads as the model's event (same values and types,
same id, keys and precedence, the same model through ``to_event``), and refuses the rest with its reason
and code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavegraph import events
from wavegraph.errors import InvalidEvent
from wavegraph.events import DecodedEdge, EdgeBatchDecoder, EdgeEvent, EdgeLike, decode_edge

MAX = 4096
GOOD = {"tenant": "acme", "src": "a", "dst": "b", "ts": 1.5}


def verdict(value: bytes | None, tenants: frozenset[str] = frozenset()) -> tuple[str, Any]:
    """The model's verdict: ("ok", the event's state) or ("refused", (reason, code))."""
    try:
        event = decode_edge(value, MAX)
    except InvalidEvent as exc:
        return "refused", (exc.reason, exc.code)
    if tenants and event.tenant not in tenants:
        return "refused", (f"tenant: unknown tenant {event.tenant!r}", "unknown_tenant")
    return "ok", state(event)


FIELDS = ("tenant", "src", "dst", "rel", "weight", "ts", "op", "given_id", "props")


def state(event: EdgeLike) -> tuple[Any, ...]:
    """Everything a sink can see: the fields with their types (the props' too), the id, the keys, the
    precedence, and the model's dump (an EdgeEvent's own, a DecodedEdge's through ``to_event``)."""
    fields = tuple((k, type(getattr(event, k)).__name__, getattr(event, k)) for k in FIELDS)
    props = tuple((k, type(v).__name__, v) for k, v in event.props.items())
    model = event if isinstance(event, EdgeEvent) else event.to_event()  # type: ignore[attr-defined]
    return (
        fields,
        props,
        event.event_id,
        event.edge_key,
        event.record_key,
        event.precedence,
        model.model_dump(mode="json"),
    )


def batch_verdicts(
    values: Sequence[bytes | None], tenants: frozenset[str] = frozenset()
) -> list[tuple[str, Any]]:
    decoded, refused = EdgeBatchDecoder(MAX, tenants).decode(values)
    accepted = iter(decoded)
    out: list[tuple[str, Any]] = []
    for i in range(len(values)):
        if i in refused:
            out.append(("refused", (refused[i].reason, refused[i].code)))
        else:
            event = next(accepted)
            assert type(event) is DecodedEdge
            out.append(("ok", state(event)))
    assert next(accepted, None) is None, "more events than valid values"
    return out


def one_verdict(value: bytes | None, tenants: frozenset[str] = frozenset()) -> tuple[str, Any]:
    try:
        return "ok", state(EdgeBatchDecoder(MAX, tenants).decode_one(value))
    except InvalidEvent as exc:
        return "refused", (exc.reason, exc.code)


# --- generated events: mostly valid, with every way a field can be wrong ------------------------

no_nul = st.characters(codec="utf-8", exclude_characters="\x00")
valid = {
    "tenant": st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
    "src": st.one_of(st.text(no_nul, min_size=1, max_size=12), st.text(no_nul, min_size=250, max_size=256)),
    "dst": st.text(no_nul, min_size=1, max_size=12),
    "ts": st.one_of(st.floats(min_value=0, allow_infinity=False), st.integers(0, 2**70)),
    "rel": st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,63}", fullmatch=True),
    "weight": st.one_of(st.floats(min_value=0, max_value=1e300), st.integers(0, 2**63), st.just(-0.0)),
    "op": st.sampled_from(["upsert", "delete"]),
    "event_id": st.text(no_nul, max_size=128),
    "props": st.dictionaries(
        st.text(no_nul, min_size=1, max_size=128),
        st.one_of(
            st.text(no_nul, max_size=6),
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
        ),
        max_size=64,
    ),
}
scalars = st.one_of(
    st.sampled_from(["a\x00", None, [1], {"x": 1}]),
    st.integers(min_value=-(2**70), max_value=2**70),
)
invalid = {
    "tenant": st.sampled_from(["", "a b", "acme\n", "x" * 65, "é", 1, None]),
    "src": st.sampled_from(["", "a\x00b", "x" * 257, 1, None, ["a"]]),
    "dst": st.sampled_from(["", "\x00", "é" * 257, True]),
    "ts": st.sampled_from([-1, -1e-300, "1", None, True, [1]]),
    "rel": st.sampled_from(["", "1x", "a-b", "R" * 65, "é", 3]),
    "weight": st.sampled_from([-1, -5e-324, "0", None, False]),
    "op": st.sampled_from(["UPSERT", "", None, 1]),
    "event_id": st.sampled_from(["e" * 129, "a\x00", 1, None]),
    "props": st.one_of(
        st.sampled_from([[], "x", None, {f"p{i}": i for i in range(65)}, {"": 1}, {"k" * 129: 1}]),
        st.dictionaries(st.text(max_size=3), scalars, min_size=1, max_size=3),
    ),
}
OPTIONAL = ["rel", "weight", "op", "event_id", "props"]


@st.composite
def edge_docs(draw: st.DrawFn) -> dict[str, Any]:
    """An edge event with at most one wrong field (half the time none), some optional fields left
    out, sometimes a required one missing or an unknown one added."""
    fields = ["tenant", "src", "dst", "ts", *OPTIONAL]
    bad = draw(st.one_of(st.none(), st.sampled_from(fields)))
    doc: dict[str, Any] = {}
    for key in fields:
        if key in OPTIONAL and key != bad and draw(st.booleans()):
            continue
        doc[key] = draw(invalid[key] if key == bad else valid[key])
    extra = draw(st.integers(0, 19))
    if extra == 0:
        doc.pop(draw(st.sampled_from(["tenant", "src", "dst", "ts"])))
    elif extra == 1:
        doc[draw(st.sampled_from(["colour", "given_id", "Tenant"]))] = 1
    return doc


@st.composite
def edge_values(draw: st.DrawFn) -> bytes:
    doc = draw(edge_docs())
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    mutation = draw(st.integers(0, 15))
    if mutation == 0:  # cut anywhere
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == 1:  # a key twice (the last one wins in both parsers)
        raw = raw[:-1] + b', "tenant": ' + json.dumps(draw(valid["tenant"])).encode() + b"}"
    elif mutation == 2:  # tokens JSON does not have, and numbers beyond a double
        token = draw(st.sampled_from([b"NaN", b"Infinity", b"1e400", b"-1e400", b"1e-400", b"1E2"]))
        raw = raw[:-1] + b', "weight": ' + token + b"}"
    elif mutation == 3:  # whitespace around the value
        raw = b" \t\r\n" + raw + b"\n "
    elif mutation == 4:  # bytes that are not UTF-8, a lone surrogate, a raw control character
        raw = raw.replace(b'"', draw(st.sampled_from([b'"\xff', b'"\\ud800', b'"\x01', b'"\xed\xa0\x80'])), 1)
    return raw


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(value=edge_values())
def test_one_value_gets_the_models_verdict(value: bytes) -> None:
    assert one_verdict(value) == verdict(value)
    assert batch_verdicts([value]) == [verdict(value)]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(edge_values(), min_size=1, max_size=12), known=st.booleans())
def test_a_batch_gets_the_models_verdict_for_each_value(values: list[bytes], known: bool) -> None:
    tenants = frozenset({"acme", "a.b-c_9"}) if known else frozenset()
    assert batch_verdicts(list(values), tenants) == [verdict(v, tenants) for v in values]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(doc=edge_docs())
def test_every_valid_generated_event_is_equal_to_the_models(doc: dict[str, Any]) -> None:
    value = json.dumps(doc).encode()
    expected = verdict(value)
    got = batch_verdicts([value, value])
    assert got == [expected, expected]


# --- the framing of a batch cannot be fooled -----------------------------------------------------


def good(**fields: Any) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


@pytest.mark.parametrize(
    "values",
    [
        # A value that opens a string and one that closes it, plus a value holding two events: the
        # joined text could parse with one element per value, each belonging to the wrong record.
        [
            b'{"tenant":"acme","src":"a","dst":"b","ts":1,"props":{"k":"}',
            b'{"}}',
            good(src="c") + b"],[" + good(src="d"),
        ],
        [good() + b"," + good(src="x")],  # two events in one value
        [good() + b"],[" + good(src="x"), b" "],  # one value splits, a blank one would hide it
        [b'{"tenant":"acme","src":"a",', b'"dst":"b","ts":1}'],  # an object cut in two
        [good(), b"", None, b"   ", b"[]", b"null", b"[" + good() + b"]"],
        [good(), good(src="a\nb"), b'{"tenant":"acme",\n"src":"a","dst":"b","ts":1}'],  # newlines
        [good(src="\x00"), good(), good(props={"k\x00": 1})],  # NUL escapes go the model's way
        [good(), b" " * (MAX + 1), good(src="y" * MAX)],  # oversized
    ],
)
def test_hostile_batches_get_the_models_verdict_record_by_record(values: list[bytes | None]) -> None:
    assert batch_verdicts(values) == [verdict(v) for v in values]


def test_every_hostile_case_of_the_model_is_refused_the_same_way() -> None:
    cases: list[bytes | None] = [
        None,
        b"",
        b"{nope",
        orjson.dumps({"tenant": "acme", "src": "a", "ts": 1}),
        good(ts="now"),
        good(weight=-1),
        good(tenant="a b"),
        good(colour="red"),
        good(weight="NaN"),
        good(src="x" * 300),
        good(props={"n": 2**63}),
        good(props={"n": -(2**63) - 1}),
        good(props={"s": "a\x00b"}),
        good(props={"k\x00": 1}),
        good(props={"d": {"x": 1}}),
        good(props={"l": [1, 2]}),
        good(props={f"p{i}": i for i in range(65)}),
        good(event_id="x\x00y"),
        b'{"tenant":"acme","src":"a","dst":"b","ts":1,"weight":NaN}',
        b'{"tenant":"acme","src":"a","dst":"b","ts":1,"weight":-Infinity}',
        json.dumps({**GOOD, "\x01" + "k" * 10_000: 1}).encode(),
    ]
    got = batch_verdicts(cases)
    assert got == [verdict(v) for v in cases]
    assert all(kind == "refused" for kind, _ in got)


def test_storable_extremes_pass_with_their_types_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    props = {"lo": -(2**63), "hi": 2**63 - 1, "f": 1e308, "b": False, "s": "ünï", "i": 3, "x": 3.0}
    values = [good(props=props), good(rel="R_2", op="delete", weight=0, event_id="given"), good(ts=0)]
    models = [decode_edge(v, MAX) for v in values]
    calls: list[object] = []
    monkeypatch.setattr(events, "decode_edge", lambda *a: calls.append(a))  # the slow path, if taken
    decoded, refused = EdgeBatchDecoder(MAX).decode(values)
    assert not refused and calls == [], "valid values must not need the model"
    assert [state(e) for e in decoded] == [state(m) for m in models]
    assert decoded[0].props == props and type(decoded[0].props["x"]) is float
    assert decoded[1].event_id == "given" and decoded[1].op == "delete"


def test_unknown_tenants_are_refused_after_the_models_own_checks() -> None:
    known = frozenset({"acme"})
    values = [good(), good(tenant="globex"), good(tenant="globex", weight=-1), good(tenant="bad tenant")]
    got = batch_verdicts(values, known)
    assert got == [verdict(v, known) for v in values]
    assert [v[1][1] if v[0] == "refused" else "ok" for v in got] == [
        "ok",
        "unknown_tenant",
        "invalid_event",
        "invalid_event",
    ]


def test_fast_events_behave_like_the_models() -> None:
    value = good(props={"k": "v"})
    fast = EdgeBatchDecoder(MAX).decode([value])[0][0]
    model = decode_edge(value, MAX)
    assert fast == model and model == fast and hash(fast) == hash(model)
    assert fast != decode_edge(good(props={"k": "w"}), MAX) and fast != value
    assert fast.to_event().model_dump_json() == model.model_dump_json()
    assert repr(fast.to_event()) == repr(model)
    assert fast.precedence == model.precedence and fast.record_key == model.record_key
    with pytest.raises(AttributeError, match="immutable"):
        fast.src = "q"  # type: ignore[misc]


def test_a_value_only_the_model_accepts_is_decoded_as_a_struct_too() -> None:
    """A literal backslash before ``u0000`` looks like a NUL escape to the fast path, which leaves the
    value to the model; the model accepts it, and the batch still yields a DecodedEdge."""
    odd = good(src="a\\u0000b")
    values = [good(), odd, good(src="c")]
    decoded, refused = EdgeBatchDecoder(MAX).decode(values)
    assert not refused and [type(e) for e in decoded] == [DecodedEdge] * 3
    assert decoded[1].src == "a\\u0000b" and decoded[1] == decode_edge(odd, MAX)
    assert [state(e) for e in decoded] == [state(decode_edge(v, MAX)) for v in values]
