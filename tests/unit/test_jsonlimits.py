"""adapter/jsonlimits.py: how deep parsed JSON nests, counted without recursion."""

from __future__ import annotations

import orjson
import pytest

from adapter.jsonlimits import MAX_DEPTH, nests_deeper


@pytest.mark.parametrize(("value", "levels"), [
    (1, 0), ("x", 0), (None, 0), ([], 1), ({}, 1), ([1, "a"], 1), ({"a": []}, 2), ([[], [[{}]]], 4),
    ({"a": 1, "b": {"c": [1, [2]]}}, 4),
])
def test_levels(value: object, levels: int) -> None:
    assert not nests_deeper(value, levels)
    assert nests_deeper(value, levels - 1) == (levels > 0)


def test_as_deep_as_orjson_reads_without_recursion() -> None:
    deepest = orjson.loads("[" * 1024 + "]" * 1024)
    assert nests_deeper(deepest) and not nests_deeper(deepest, 1024) and nests_deeper(deepest, 1023)


def test_the_limit_leaves_room_for_what_wraps_a_stored_value() -> None:
    """orjson writes 254 levels at most; a stored value is shown again inside a few more (envelope, `d`)."""
    assert MAX_DEPTH + 8 < 255
    value: object = []
    for _ in range(MAX_DEPTH - 1):
        value = {"a": value}
    assert not nests_deeper(value)
    orjson.dumps({"status": "ok", "data": {"list": [{"d": value}]}})


@pytest.mark.parametrize("text", ["[]", '{"a": [1, {"b": []}]}', '{"s": "[[[[{{{{"}', "[" * 70 + "]" * 70,
                                  '{"a": "' + "[" * 80 + '", "b": [[1]]}', "7"])
@pytest.mark.parametrize("limit", [0, 1, 2, 3, 64, 69, 70])
def test_the_text_gives_the_same_answer(text: str, limit: int) -> None:
    """With the text it was parsed from (str or bytes), the answer is the walk's: the count of opening brackets only
    spares the walk when it cannot be deeper."""
    value = orjson.loads(text)
    assert nests_deeper(value, limit, text) == nests_deeper(value, limit) == nests_deeper(value, limit, text.encode())
