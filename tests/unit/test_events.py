import json
from pathlib import Path

import orjson
import pytest

from wavegraph.errors import InvalidEvent
from wavegraph.events import (
    AudioMeta,
    EdgeEvent,
    audio_meta_from_headers,
    decode_edge,
    dlq_headers,
    edge_record_key,
    export_json_schemas,
    parse_dlq_headers,
)

GOOD = {"tenant": "acme", "src": "a", "dst": "b", "ts": 1.5}


def test_edge_id_is_deterministic_and_depends_on_content() -> None:
    a = decode_edge(orjson.dumps(GOOD), 1000)
    b = decode_edge(orjson.dumps(GOOD), 1000)
    c = decode_edge(orjson.dumps({**GOOD, "dst": "c"}), 1000)
    assert a.event_id == b.event_id != c.event_id
    assert len(a.event_id) == 32
    assert decode_edge(orjson.dumps({**GOOD, "event_id": "given"}), 1000).event_id == "given"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (b"{nope", "bad JSON"),
        (orjson.dumps({"tenant": "acme", "src": "a", "ts": 1}), "dst: Field required"),
        (orjson.dumps({**GOOD, "ts": "now"}), "ts: Input should be a valid number"),
        (orjson.dumps({**GOOD, "weight": -1}), "weight: Input should be greater than or equal to 0"),
        (orjson.dumps({**GOOD, "tenant": "a b"}), "tenant: String should match pattern"),
        (orjson.dumps({**GOOD, "colour": "red"}), "colour: Extra inputs are not permitted"),
        (orjson.dumps({**GOOD, "weight": "NaN"}), "weight"),
        (orjson.dumps({**GOOD, "src": "x" * 300}), "src: String should have at most 256 characters"),
    ],
)
def test_invalid_edges_name_field_and_problem(value: bytes, needle: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        decode_edge(value, 10_000)
    assert needle in exc.value.reason


def test_oversized_edge_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidEvent, match="oversized: 2000 bytes > limit 1000"):
        decode_edge(b" " * 2000, 1000)


def test_audio_headers_round_trip_and_validation() -> None:
    meta = AudioMeta(tenant="acme", stream_id="s1", seq=3, sample_rate=44100, channels=2, eos=True)
    assert audio_meta_from_headers(meta.to_headers()) == meta
    bad = [(k, v) for k, v in meta.to_headers() if k != "seq"]
    with pytest.raises(InvalidEvent, match="header seq: Field required"):
        audio_meta_from_headers(bad)
    rate = [(k, b"96000" if k == "sample_rate" else v) for k, v in meta.to_headers()]
    with pytest.raises(InvalidEvent, match="header sample_rate"):
        audio_meta_from_headers(rate)


def test_dlq_headers_keep_original_headers() -> None:
    headers = dlq_headers("t", 1, 42, "dst: Field required", "edges", [("x", b"y")])
    assert parse_dlq_headers(headers) == {
        "topic": "t",
        "partition": "1",
        "offset": "42",
        "reason": "dst: Field required",
        "processor": "edges",
    }
    assert ("x", b"y") in headers


def test_exported_schemas_are_current(tmp_path: Path) -> None:
    fresh = export_json_schemas(tmp_path)
    committed = Path(__file__).parents[2] / "docs" / "schemas"
    for path in fresh:
        assert (committed / path.name).read_bytes() == path.read_bytes(), f"{path.name} is stale"
    schema = orjson.loads((tmp_path / "wavegraph.edges.v1.schema.json").read_bytes())
    assert set(schema["required"]) == {"tenant", "src", "dst", "ts"}
    assert EdgeEvent.model_json_schema()["additionalProperties"] is False


# --- what no sink can store is refused at validation ---------------------------------------------


@pytest.mark.parametrize(
    ("props", "loc", "words"),
    [
        ({"n": 2**63}, "props.n", "64-bit"),
        ({"n": -(2**63) - 1}, "props.n", "64-bit"),
        ({"s": "a\x00b"}, "props.s", "NUL"),
        ({"k\x00": 1}, "props.k\\x00", "NUL"),
        ({"d": {"x": 1}}, "props.d", "nested"),
        ({"l": [1, 2]}, "props.l", "nested"),
        ({f"p{i}": i for i in range(65)}, "props", "at most 64"),
    ],
)
def test_props_that_no_sink_can_store_are_refused_naming_the_field(
    props: dict[str, object], loc: str, words: str
) -> None:
    value = json.dumps({"tenant": "acme", "src": "a", "dst": "b", "ts": 1.0, "props": props}).encode()
    with pytest.raises(InvalidEvent) as exc:
        decode_edge(value, 1 << 20)
    assert exc.value.reason.startswith(f"{loc}: "), exc.value.reason
    assert words in exc.value.reason
    assert exc.value.code == "invalid_event"


def test_storable_extremes_pass_and_keep_their_types() -> None:
    props = {"lo": -(2**63), "hi": 2**63 - 1, "f": 1e308, "b": False, "s": "ünï"}
    value = json.dumps({"tenant": "acme", "src": "a", "dst": "b", "ts": 1.0, "props": props}).encode()
    assert decode_edge(value, 1 << 20).props == props


@pytest.mark.parametrize("field", ["src", "dst", "event_id"])
def test_a_nul_in_any_string_field_is_refused(field: str) -> None:
    doc = {"tenant": "acme", "src": "a", "dst": "b", "ts": 1.0, field: "x\x00y"}
    with pytest.raises(InvalidEvent, match="NUL"):
        decode_edge(json.dumps(doc).encode(), 1 << 20)


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(token: bytes) -> None:
    with pytest.raises(InvalidEvent, match="finite"):
        decode_edge(b'{"tenant":"acme","src":"a","dst":"b","ts":1,"weight":' + token + b"}", 1 << 20)


def test_audio_headers_refuse_a_nul_in_the_stream_id() -> None:
    headers = [("tenant", b"acme"), ("stream_id", b"s\x00"), ("seq", b"0")]
    with pytest.raises(InvalidEvent, match=r"header stream_id: .*NUL") as exc:
        audio_meta_from_headers(headers)
    assert exc.value.code == "bad_header"


def test_reason_codes_separate_json_from_fields() -> None:
    with pytest.raises(InvalidEvent) as bad_json:
        decode_edge(b"{", 100)
    with pytest.raises(InvalidEvent) as big:
        decode_edge(b"{}" * 100, 100)
    assert (bad_json.value.code, big.value.code) == ("bad_json", "oversized")


def test_a_hostile_field_name_is_clipped_and_escaped_in_the_reason() -> None:
    name = "\x01" + "k" * 10_000
    with pytest.raises(InvalidEvent) as exc:
        decode_edge(
            json.dumps({"tenant": "acme", "src": "a", "dst": "b", "ts": 1, name: 1}).encode(), 1 << 20
        )
    assert exc.value.reason.startswith("\\x01kkk") and len(exc.value.reason) < 300


def test_the_precedence_orders_events_of_one_edge_whatever_their_arrival() -> None:
    up = EdgeEvent(tenant="acme", src="a", dst="b", ts=2.0)
    delete = EdgeEvent(tenant="acme", src="a", dst="b", ts=2.0, op="delete")
    newer = EdgeEvent(tenant="acme", src="a", dst="b", ts=3.0)
    assert max([up, delete, newer], key=lambda e: e.precedence) is newer
    assert max([delete, up], key=lambda e: e.precedence) is delete  # at equal ts a delete wins
    assert up.record_key == delete.record_key == edge_record_key("acme", "a", "LINKS", "b")
