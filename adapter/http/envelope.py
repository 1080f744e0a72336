"""The response envelope and request decoding shared by every handler.

Success: `{"status":"ok","data":…}`; failure: `{"status":"err","code":…,"msg":…}` (docs/design.md §10).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from adapter.errors import AppError


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"status": "ok", "data": data}, status_code=status)


def err(error: AppError) -> JSONResponse:
    return JSONResponse({"status": "err", "code": error.code, "msg": error.msg},
                        status_code=error.status, headers=error.headers or None)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise AppError("too_large", f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise AppError("too_large", f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        raise AppError("invalid_params", "body: a JSON body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AppError("invalid_params", "body: not valid JSON") from None
