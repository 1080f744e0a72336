"""Request validation: JSON bodies against the same JSON Schemas the OpenAPI document publishes,
and query parameters against their declared `Param`s. Errors name the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from adapter.errors import invalid


def _field_of(error: ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [r for r in error.validator_value if r not in error.instance]
        if missing:
            return f"{path}.{missing[0]}" if path else str(missing[0])
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            return f"{path}.{extra[0]}" if path else extra[0]
    return path or "body"


def _message(error: ValidationError) -> str:
    if error.validator == "required":
        return "is required"
    if error.validator == "additionalProperties":
        return "is not a known field"
    if error.validator == "type":
        return f"must be of type {error.validator_value}"
    return error.message


@lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(schema_json))


def check_body(schema: Mapping[str, Any], body: Any) -> Any:
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    error = min(validator.iter_errors(body), key=lambda e: (len(e.absolute_path), e.message), default=None)
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
        try:
            value = int(raw)
        except ValueError:
            raise invalid(f"{self.name}: must be an integer") from None
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


def check_query(params: tuple[Param, ...], query: Mapping[str, str]) -> dict[str, Any]:
    return {p.name: p.parse(query.get(p.name)) for p in params}


PAGE = Param("page", "int", default=1, minimum=1, maximum=1_000_000, description="page number, from 1")
LIMIT = Param("limit", "int", default=100, minimum=1, maximum=1000, description="items per page")
