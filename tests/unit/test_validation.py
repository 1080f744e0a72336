"""adapter/http/validation.py: a 400 names the field and never prints the value back (a long password was
echoed in full), and an integer parameter is ASCII digits only (Python's int() takes '１２３', '١', '1_0', ' 1')."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.app import endpoints
from adapter.commands.ids import parse_id
from adapter.errors import AppError
from adapter.http.validation import LIMIT, PAGE, Param, check_body

MARK = "SECRETVALUE"
NUMBER = 987654321987


def bad_values() -> list[Any]:
    return [MARK * 200, MARK, [MARK, MARK], {MARK: MARK}, NUMBER, -NUMBER, True, None, 1.5]


BODIES = [(ep.method, ep.path, ep.body) for ep in endpoints() if ep.body is not None]


@pytest.mark.parametrize(("method", "path", "schema"), BODIES, ids=[f"{m} {p}" for m, p, _ in BODIES])
def test_no_body_error_prints_the_value_back(method: str, path: str, schema: dict[str, Any]) -> None:
    refused = 0
    alone = {**schema, "required": []}  # else "is required" of another field comes first
    for name in schema.get("properties", {}):
        for value in bad_values():
            try:
                check_body(alone, {name: value})
            except AppError as exc:
                refused += 1
                assert exc.code == "invalid_params"
                assert MARK not in exc.msg and str(NUMBER) not in exc.msg, exc.msg
                assert ":" in exc.msg and " " not in exc.msg.split(":")[0], exc.msg  # starts with the field
    assert refused


def test_an_unknown_field_is_named_but_a_long_name_is_cut() -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    with pytest.raises(AppError) as caught:
        check_body(schema, {"colour": 1})
    assert caught.value.msg == "colour: is not a known field"
    with pytest.raises(AppError) as caught:
        check_body(schema, {"x" * 100_000: 1})
    assert caught.value.msg == "x" * 64 + "…: is not a known field"


@pytest.mark.parametrize(("schema", "value", "msg"), [
    ({"type": "string", "maxLength": 3}, "SECRET", "p: must be at most 3 characters"),
    ({"type": "string", "minLength": 8}, "SECRET", "p: must be at least 8 characters"),
    ({"type": "string", "pattern": "^whsec_"}, "SECRET", "p: must match ^whsec_"),
    ({"enum": ["a", "b"]}, "SECRET", 'p: must be one of "a", "b"'),
    ({"const": False}, "SECRET", "p: must be false"),
    ({"type": "integer", "minimum": 1}, -5, "p: must be at least 1"),
    ({"type": "integer", "maximum": 5}, 99, "p: must be at most 5"),
    ({"type": "array", "maxItems": 1}, ["SECRET", 2], "p: must have at most 1 items"),
    ({"type": "array", "minItems": 1}, [], "p: must have at least 1 items"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, ["SECRET"], "p: is not valid"),
    ({"type": "string"}, 5, "p: must be of type string"),
])
def test_messages(schema: dict[str, Any], value: object, msg: str) -> None:
    with pytest.raises(AppError) as caught:
        check_body({"type": "object", "properties": {"p": schema}}, {"p": value})
    assert caught.value.msg == msg


@pytest.mark.parametrize("raw", ["１２３", "١", "1_0", " 1", "1 ", "+1", "1.0", "0x10", "1e3", "٣", "¹", "9" * 5000])
@pytest.mark.parametrize("param", [PAGE, LIMIT, Param("id", "int", minimum=1, maximum=10**9)])
def test_an_integer_parameter_is_ascii_digits(param: Param, raw: str) -> None:
    with pytest.raises(AppError) as caught:
        param.parse(raw)
    assert caught.value.msg == f"{param.name}: must be an integer"


def test_integer_parameters_still_parse_and_check_their_bounds() -> None:
    assert (PAGE.parse("7"), PAGE.parse("007"), LIMIT.parse(None)) == (7, 7, 100)
    with pytest.raises(AppError, match="page: must be at least 1"):
        PAGE.parse("-3")
    with pytest.raises(AppError, match="limit: must be at most 1000"):
        LIMIT.parse("1001")


@pytest.mark.parametrize("raw", [" 201811260000000001", "201811260000000001 ", "\t201811260000000001",
                                 "２01811260000000001", "20181126000000_001"])
def test_a_command_id_is_exactly_18_ascii_digits(raw: str) -> None:
    assert parse_id(raw) is None
    assert parse_id("201811260000000001") == 201811260000000001


def test_an_unknown_field_inside_a_value_is_not_echoed_but_the_known_ones_are_listed() -> None:
    schema = {"type": "object", "properties": {"selector": {
        "type": "object", "properties": {"tag": {"type": "string"}, "sns": {"type": "array"}},
        "additionalProperties": False}}}
    with pytest.raises(AppError) as caught:
        check_body(schema, {"selector": {"colour": 1}})
    assert caught.value.msg == "selector: has a field that is not one of sns, tag"
