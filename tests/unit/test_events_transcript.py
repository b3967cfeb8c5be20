"""``TranscriptEvent.cursor``: optional, so events published before it stay valid."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from wavegraph.events import TranscriptEvent, WindowCursor

OLD = {
    "tenant": "acme",
    "stream_id": "s1",
    "window": 0,
    "start_s": 0.0,
    "end_s": 4.0,
    "text": "hi",
    "segments": [{"start_s": 0.0, "end_s": 4.0, "text": "hi"}],
    "model": "tiny.en",
    "device": "cpu",
    "processing_ms": 1.0,
    "xrt": 0.1,
}
CURSOR = {"first_seq": 0, "last_seq": 1, "next_seq": 2, "skip": 0, "start_s": 4.0, "next_window": 1}


def test_an_event_without_a_cursor_is_valid_and_the_cursor_takes_no_part_in_the_id() -> None:
    old = TranscriptEvent.model_validate_json(orjson.dumps(OLD))
    new = TranscriptEvent.model_validate_json(orjson.dumps({**OLD, "cursor": CURSOR}))
    assert old.cursor is None
    assert new.cursor == WindowCursor(**CURSOR) and new.cursor.final is False
    assert old.event_id == new.event_id


@pytest.mark.parametrize(("field", "value"), [("skip", -1), ("next_seq", 2**63), ("start_s", float("nan"))])
def test_a_cursor_out_of_range_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        WindowCursor(**{**CURSOR, field: value})  # type: ignore[arg-type]
