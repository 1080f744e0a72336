"""`POST /emqx/events`: every EMQX push (rule-engine HTTP action or 4.x web_hook) comes in here.

200 only after the effects are in Redis; 503 with Retry-After when Redis fails in any way (a lost connection, the
batch's read deadline, READONLY during a failover, OOM, BUSY, MISCONF: EMQX retries 429/503 and drops any other
status, 500 included) and for messages until the route table has loaded once; 400 for a malformed body (a client
id with NUL or over 65535 bytes among them), 200 for event types the service does not use.

It is the hottest path of the service, so `serve` answers it on raw ASGI, called by the app (adapter.app.App)
before its middleware stack and router, without Request objects; the declared Endpoint answers the same way
and is what the OpenAPI document describes. Both run `answer_bytes`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache

import orjson
import redis.exceptions
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from adapter.auth.users import bearer
from adapter.errors import AppError, storage_unavailable
from adapter.http.endpoint import Call, Endpoint
from adapter.http.envelope import check_declared, check_streamed, decode_json, error_response, read_body
from adapter.ingest.plan import Ingest
from adapter.ingest.turns import Turn
from adapter.protocol.events import BadClientId, parse_event
from adapter.store.connections import Services

log = logging.getLogger("adapter.ingest.plan")


def ingest_of(call: Call) -> Ingest:
    ingest: Ingest = call.svc.extras["ingest"]
    return ingest


def require_token(expected: str, header: str | None) -> None:
    """The shared secret EMQX sends (`Authorization: Bearer …`), compared in constant time."""
    given = (bearer(header) or "").encode()
    if not expected or not hmac.compare_digest(given, expected.encode()):
        raise AppError("unauthorized", "a valid ingest token is required", headers={"WWW-Authenticate": "Bearer"})


def check_token(call: Call) -> None:
    require_token(call.svc.settings.ingest_token, call.request.headers.get("authorization"))


async def answer_bytes(ingest: Ingest, raw: bytes, turn: Turn | None = None) -> bytes:
    """The success envelope of one event, as bytes (`turn`: Ingest.apply's)."""
    try:
        ev = parse_event(decode_json(raw))
    except AppError as exc:
        ingest.count_malformed(exc.reason if isinstance(exc, BadClientId) else "malformed")
        raise
    try:
        p = await ingest.apply(ev, turn)
    except (redis.exceptions.RedisError, OSError) as exc:  # OSError: the batch's deadline (TimeoutError) too
        ingest.count_unavailable("redis")
        _log_storage_failure(exc)
        raise storage_unavailable() from None
    return _envelope(p.label, p.rejected)


_logged_at = 0.0


def _log_storage_failure(exc: BaseException) -> None:
    """One line per LOG_EVERY seconds at most: while Redis is down, every event fails the same way."""
    global _logged_at
    now = time.monotonic()
    if now - _logged_at >= LOG_EVERY:
        _logged_at = now
        log.warning("ingest: Redis failed, answering 503: %s: %s", type(exc).__name__, exc)


@lru_cache(maxsize=256)
def _envelope(label: str, rejected: str | None) -> bytes:
    data: dict[str, str] = {"event": label, **({"rejected": rejected} if rejected else {})}
    return orjson.dumps({"status": "ok", "data": data})


async def emqx_events(call: Call) -> Response:
    check_token(call)
    raw = await read_body(call.request, call.svc.settings.max_body_bytes)
    return Response(await answer_bytes(ingest_of(call), raw), media_type="application/json")


def is_ingest(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST"


async def serve(svc: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /emqx/events` on raw ASGI, straight to `answer_bytes` (adapter.app.App calls it before its
    middleware stack and router)."""
    started = time.perf_counter()
    headers = dict(scope["headers"])
    answered = await answer(svc, headers.get(b"authorization"),
                            lambda limit: read_asgi_body(receive, headers.get(b"content-length"), limit))
    if isinstance(answered, bytes):  # success: sent as is, without a Response object
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answered)).encode())]})
        await send({"type": "http.response.body", "body": answered})
    else:
        await answered(scope, receive, send)
    svc.metrics.observe("POST", PATH, time.perf_counter() - started)


async def answer(svc: Services, auth: bytes | None, body: Callable[[int], Awaitable[bytes]],
                 turn: Turn | None = None) -> bytes | Response:
    """The success envelope's bytes, or the error's Response: `auth` is the Authorization header, `body` reads the
    body refusing it past the limit it is given (checked after the token, so a caller without one reads nothing);
    `turn`: Ingest.apply's (the caller passes it on however the event ends)."""
    try:
        require_token(svc.settings.ingest_token, auth.decode("latin-1") if auth is not None else None)
        raw = await body(svc.settings.max_body_bytes)
        return await answer_bytes(svc.extras["ingest"], raw, turn)
    except Exception as exc:
        return error_response(exc, f"POST {PATH}")


async def read_asgi_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """envelope.read_body on raw ASGI messages."""
    check_declared(declared, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise AppError("invalid_params", "body: the client went away")
        chunk = message.get("body", b"")
        size = check_streamed(size + len(chunk), limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


PATH = "/emqx/events"
LOG_EVERY = 10.0  # s between log lines about Redis failures
ENDPOINTS = [
    Endpoint("POST", PATH, emqx_events, "EMQX pushes events here (Bearer = ADAPTER_INGEST_TOKEN)",
             access="public", tag="ingest", errors=(400, 401, 413),
             response={"type": "object", "required": ["event"],
                       "properties": {"event": {"type": "string"}, "rejected": {"type": "string"}}}),
]
