"""Minimal ASGI receivers for the delivery benchmarks (no framework: the receiver must not be the bottleneck).

`app` records the receipt time of every `webhook-id` and hands them out on GET (bench_delivery.py runs it under
uvicorn in its own process); `read_body` is shared with the in-process receiver of bench_route_latency.py.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

JSON = [(b"content-type", b"application/json")]
seen: dict[str, float] = {}


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def answer(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": JSON})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive)
    if scope["method"] == "GET":  # the receipts so far, then forget them
        out = orjson.dumps(seen)
        seen.clear()
        await answer(send, out)
        return
    now = time.time()
    for k, v in scope["headers"]:
        if k == b"webhook-id":
            seen[v.decode()] = now
    await answer(send, b'{"ok":true}')
