from wavegraph.errors import InvalidEvent
from wavegraph.streams.reasons import CODES, code_of
from wavegraph.streams.sink import Item, Rejection


def test_unknown_codes_become_other_so_labels_stay_bounded() -> None:
    assert code_of("bad_json") == "bad_json"
    assert code_of("props.x_4f2a: Extra inputs") == "other"
    assert code_of(None) == "other"
    assert "other" in CODES


def test_default_codes_are_in_the_fixed_set() -> None:
    assert InvalidEvent("x").code in CODES
    assert Rejection(Item(1, "t", 0, 0, b""), "why").code in CODES
