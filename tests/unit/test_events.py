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
