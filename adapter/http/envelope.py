"""The response envelope and request decoding shared by every handler.

Success: `{"status":"ok","data":…}`; failure: `{"status":"err","code":…,"msg":…}` (docs/design.md §10).
`error_response` is the one place an exception becomes the failure envelope, on every path: the endpoint
wrapper, the ingest fast path and the app's exception handlers (unknown route, wrong method, anything unhandled).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import redis.exceptions
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from adapter.errors import AppError, storage_unavailable
from adapter.jsonlimits import nests_deeper

log = logging.getLogger("adapter.http")

_HTTP_CODES = {400: "invalid_params", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
_HTTP_MESSAGES = {404: "no such endpoint", 405: "method not allowed"}


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"status": "ok", "data": data}, status_code=status)


def error_response(exc: BaseException, where: str = "") -> JSONResponse:
    """The failure envelope of `exc` (`where`: "METHOD /path", for the log)."""
    error = as_app_error(exc, where)
    return JSONResponse({"status": "err", "code": error.code, "msg": error.msg},
                        status_code=error.status, headers=error.headers or None)


def as_app_error(exc: BaseException, where: str = "") -> AppError:
    """An AppError as it is; Starlette's HTTP errors by their status; a Redis failure (or OSError: a lost
    connection, a deadline) 503 with Retry-After; anything else 500 "internal error", logged with its traceback
    and never shown to the client."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "invalid_params" if exc.status_code < 500 else "internal")
        return AppError(code, _HTTP_MESSAGES.get(exc.status_code, str(exc.detail)), status=exc.status_code,
                        headers=dict(exc.headers or {}))
    if isinstance(exc, redis.exceptions.RedisError | OSError):
        log.warning("%s: Redis failed, answering 503: %s: %s", where, type(exc).__name__, exc)
        return storage_unavailable()
    log.error("unhandled error on %s", where, exc_info=exc)
    return AppError("internal", "internal error")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    check_declared(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size = check_streamed(size + len(chunk), limit)
        chunks.append(chunk)
    return b"".join(chunks)


def check_declared(declared: str | bytes | None, limit: int) -> None:
    """413 before reading when the body's declared length (Content-Length) passes `limit`."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise AppError("too_large", f"body over {limit} bytes")


def check_streamed(size: int, limit: int) -> int:
    """`size` (the bytes read so far), or 413 once it passes `limit`."""
    if size > limit:
        raise AppError("too_large", f"body over {limit} bytes")
    return size


def decode_json(raw: bytes, *, max_depth: int | None = None) -> Any:
    """The parsed body; with `max_depth`, one nested deeper is refused too (adapter/jsonlimits.py: what the API
    stores it must be able to write back). The ingest's EMQX bodies are only read, so it skips that walk."""
    if not raw.strip():
        raise AppError("invalid_params", "body: a JSON body is required")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AppError("invalid_params", "body: not valid JSON") from None
    if max_depth is not None and nests_deeper(value, max_depth, raw):
        raise AppError("invalid_params", f"body: nested deeper than {max_depth} levels")
    return value
