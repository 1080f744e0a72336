"""The OpenAPI 3.1 document, built from the declared endpoints (the same schemas validate requests)."""

from __future__ import annotations

import re
from typing import Any

from adapter import __version__
from adapter.http.endpoint import Endpoint

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "code", "msg"],
    "properties": {
        "status": {"const": "err"},
        "code": {"type": "string"},
        "msg": {"type": "string"},
    },
    "additionalProperties": False,
}

_ERROR_TEXT = {
    400: "invalid parameters (invalid_params)",
    401: "missing or invalid token (unauthorized)",
    403: "the role does not allow it (forbidden)",
    404: "unknown item (not_found)",
    409: "conflicts with the current state (conflict)",
    413: "body too large (too_large)",
    429: "too many attempts (rate_limited)",
    502: "the broker does not answer (broker_unavailable)",
    503: "storage unavailable (unavailable)",
}


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    """Schema of a paged list: total, count, page, limit, list."""
    return {
        "type": "object",
        "required": ["total", "count", "page", "limit", "list"],
        "properties": {
            "total": {"type": "integer", "minimum": 0},
            "count": {"type": "integer", "minimum": 0},
            "page": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer", "minimum": 1},
            "list": {"type": "array", "items": item},
        },
    }


def error_statuses(ep: Endpoint) -> list[int]:
    codes = set(ep.errors) | {503}
    if ep.body is not None:
        codes |= {400, 413}
    if ep.query:
        codes.add(400)
    if ep.access != "public":
        codes.add(401)
    if ep.access == "admin":
        codes.add(403)
    if "{" in ep.path:
        codes.add(404)
    return sorted(codes)


def operation(ep: Endpoint, operation_id: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": operation_id,
        "tags": [ep.tag],
        "responses": {str(ep.status): {"description": "success", "content": _success_content(ep)}},
    }
    for code in error_statuses(ep):
        op["responses"][str(code)] = {
            "description": _ERROR_TEXT.get(code, "error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    params = [{"name": p.name, "in": "query", "required": p.required, "description": p.description,
               "schema": p.schema()} for p in ep.query]
    params += [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
               for name in _path_names(ep.path)]
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": dict(ep.body)}}}
    if ep.access != "public":
        op["security"] = [{"bearer": []}]
    return op


def _success_content(ep: Endpoint) -> dict[str, Any]:
    if ep.media_type != "application/json":
        return {ep.media_type: {"schema": {"type": "string"}}}
    if not ep.envelope:
        return {"application/json": {"schema": dict(ep.response)}}
    return {"application/json": {"schema": {
        "type": "object",
        "required": ["status", "data"],
        "properties": {"status": {"const": "ok"}, "data": dict(ep.response)},
    }}}


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def operation_ids(endpoints: list[Endpoint]) -> list[str]:
    """The handler's name, made unique with its path where handlers are shared (callbacks and routes)."""
    names = [ep.handler.__name__ for ep in endpoints]
    shared = {n for n in names if names.count(n) > 1}
    return [n if n not in shared else n + "_" + re.sub(r"[^a-z0-9]+", "_", ep.path.lower()).strip("_")
            for n, ep in zip(names, endpoints, strict=True)]


def document(endpoints: list[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep, op_id in zip(endpoints, operation_ids(endpoints), strict=True):
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation(ep, op_id)
    return {
        "openapi": "3.1.0",
        "info": {"title": "EMQX device adapter, v1 API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
