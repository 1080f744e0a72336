"""`POST /emqx/events`: every EMQX push (rule-engine HTTP action or 4.x web_hook) comes in here.

200 only after the effects are in Redis; 503 when Redis does not answer (EMQX retries 429/503 and drops
any other status); 400 for a malformed body, 200 for event types the service does not use.
"""

from __future__ import annotations

import hmac
from typing import Any

from adapter.auth import bearer
from adapter.endpoint import Call, Endpoint
from adapter.envelope import decode_json, read_body
from adapter.errors import AppError
from adapter.events import parse_event
from adapter.ingest import Ingest


def ingest_of(call: Call) -> Ingest:
    ingest: Ingest = call.svc.extras["ingest"]
    return ingest


def check_token(call: Call) -> None:
    expected = call.svc.settings.ingest_token.encode()
    given = (bearer(call.request.headers.get("authorization")) or "").encode()
    if not expected or not hmac.compare_digest(given, expected):
        raise AppError("unauthorized", "a valid ingest token is required", headers={"WWW-Authenticate": "Bearer"})


async def emqx_events(call: Call) -> dict[str, Any]:
    check_token(call)
    ingest = ingest_of(call)
    raw = await read_body(call.request, call.svc.settings.max_body_bytes)
    try:
        ev = parse_event(decode_json(raw))
    except AppError:
        ingest.count_malformed()
        raise
    p = await ingest.apply(ev)
    return {"event": p.label, **({"rejected": p.rejected} if p.rejected else {})}


ENDPOINTS = [
    Endpoint("POST", "/emqx/events", emqx_events, "EMQX pushes events here (Bearer = ADAPTER_INGEST_TOKEN)",
             access="public", tag="ingest", errors=(400, 401, 413),
             response={"type": "object", "required": ["event"],
                       "properties": {"event": {"type": "string"}, "rejected": {"type": "string"}}}),
]
