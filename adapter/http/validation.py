"""Request validation: JSON bodies against the same JSON Schemas the OpenAPI document publishes,
and query parameters against their declared `Param`s. Errors name the field and say what it must be, from the
schema alone: they never print the value back (a password, a token, a megabyte of text); a field name the
client made up is cut at FIELD_NAME_MAX characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from adapter.errors import invalid

FIELD_NAME_MAX = 64


def _field_of(error: ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [r for r in error.validator_value if r not in error.instance]
        if missing:
            path = f"{path}.{missing[0]}" if path else str(missing[0])
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra and not path:  # a body's own field is named; inside a field's value the names are the value's
            path = extra[0]
    path = path or "body"
    return path if len(path) <= FIELD_NAME_MAX else path[:FIELD_NAME_MAX] + "…"


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


# what each JSON Schema keyword says about a field, from the keyword's value (the schema), never the instance
_MESSAGES: dict[str, Callable[[Any], str]] = {
    "required": lambda _: "is required",
    "additionalProperties": lambda _: "is not a known field",
    "type": lambda v: f"must be of type {v if isinstance(v, str) else ' or '.join(v)}",
    "minLength": lambda v: f"must be at least {v} characters",
    "maxLength": lambda v: f"must be at most {v} characters",
    "pattern": lambda v: f"must match {v}",
    "enum": lambda v: f"must be one of {', '.join(map(_json, v))}",
    "const": lambda v: f"must be {_json(v)}",
    "minimum": lambda v: f"must be at least {v}",
    "maximum": lambda v: f"must be at most {v}",
    "exclusiveMinimum": lambda v: f"must be more than {v}",
    "exclusiveMaximum": lambda v: f"must be less than {v}",
    "minItems": lambda v: f"must have at least {v} items",
    "maxItems": lambda v: f"must have at most {v} items",
    "uniqueItems": lambda _: "must not repeat an item",
    "minProperties": lambda v: f"must have at least {v} fields",
    "maxProperties": lambda v: f"must have at most {v} fields",
}


def _message(error: ValidationError) -> str:
    if error.validator == "additionalProperties" and error.absolute_path:
        known = ", ".join(sorted(error.schema.get("properties", {})))
        return f"has a field that is not one of {known}" if known else "must be an empty object"
    says = _MESSAGES.get(str(error.validator))
    return says(error.validator_value) if says is not None else "is not valid"


@lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(schema_json))


def check_body(schema: Mapping[str, Any], body: Any) -> Any:
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    error = min(validator.iter_errors(body), key=lambda e: (len(e.absolute_path), _message(e)), default=None)
    if error is not None:
        raise invalid(f"{_field_of(error)}: {_message(error)}")
    return body


@dataclass(frozen=True)
class Param:
    """A query parameter: `kind` is "int", "str" or "bool"."""

    name: str
    kind: str = "str"
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[str, ...] | None = None
    required: bool = False
    description: str = ""

    def parse(self, raw: str | None) -> Any:
        if raw is None or raw == "":
            if self.required:
                raise invalid(f"{self.name}: is required")
            return self.default
        if self.kind == "int":
            return self._int(raw)
        if self.kind == "bool":
            if raw.lower() in ("true", "1"):
                return True
            if raw.lower() in ("false", "0"):
                return False
            raise invalid(f"{self.name}: must be true or false")
        if self.enum is not None and raw not in self.enum:
            raise invalid(f"{self.name}: must be one of {', '.join(self.enum)}")
        return raw

    def _int(self, raw: str) -> int:
        if not _INTEGER.fullmatch(raw):  # int() also takes '１２３', '١', '1_0', ' 1', '+1'
            raise invalid(f"{self.name}: must be an integer")
        value = int(raw)
        if self.minimum is not None and value < self.minimum:
            raise invalid(f"{self.name}: must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise invalid(f"{self.name}: must be at most {self.maximum}")
        return value

    def schema(self) -> dict[str, Any]:
        kind = {"int": "integer", "bool": "boolean"}.get(self.kind, "string")
        out: dict[str, Any] = {"type": kind}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.default is not None:
            out["default"] = self.default
        return out


_INTEGER = re.compile(r"-?[0-9]{1,19}")


def check_query(params: tuple[Param, ...], query: Mapping[str, str]) -> dict[str, Any]:
    return {p.name: p.parse(query.get(p.name)) for p in params}


PAGE = Param("page", "int", default=1, minimum=1, maximum=1_000_000, description="page number, from 1")
LIMIT = Param("limit", "int", default=100, minimum=1, maximum=1000, description="items per page")
