"""Login, logout, who am I (seed: "Login")."""

from __future__ import annotations

from typing import Any

from adapter.auth.throttle import VerifyLimiter
from adapter.auth.users import Sessions
from adapter.http.endpoint import Call, Endpoint
from adapter.store.connections import Services

USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["user", "roles", "privileges"],
    "properties": {
        "user": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string", "enum": ["admin", "viewer"]}},
        "privileges": {"type": "array", "items": {"type": "string", "enum": ["admin", "view"]}},
    },
}

LOGIN_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["user", "password"],
    "properties": {
        "user": {"type": "string", "minLength": 1, "maxLength": 64},
        "password": {"type": "string", "minLength": 1, "maxLength": 1024},
    },
}


LIMITER = "login_limiter"


def _sessions(call: Call) -> Sessions:
    return Sessions(call.svc.redis, call.svc.keys, call.svc.settings, _limiter(call.svc))


def _limiter(svc: Services) -> VerifyLimiter:
    """This process's bound on concurrent password checks (its own: device authentication has another)."""
    limiter = svc.extras.get(LIMITER)
    if limiter is None:
        s = svc.settings
        limiter = svc.extras[LIMITER] = VerifyLimiter(s.login_verify_concurrency, s.login_verify_queue)
    assert isinstance(limiter, VerifyLimiter)
    return limiter


async def login(call: Call) -> dict[str, Any]:
    principal, token = await _sessions(call).login(call.body["user"], call.body["password"], call.client_address)
    return {"user": principal.describe(), "token": token}


async def logout(call: Call) -> dict[str, Any]:
    assert call.principal is not None and call.token is not None
    await _sessions(call).logout(call.token, call.principal)
    return {}


async def me(call: Call) -> dict[str, Any]:
    assert call.principal is not None
    return {"user": call.principal.describe()}


ENDPOINTS = [
    Endpoint("POST", "/iot/api/v1/auth/login", login, "Log in; answers a bearer token", access="public",
             body=LOGIN_BODY, errors=(401, 429, 503),
             response={"type": "object", "required": ["user", "token"],
                       "properties": {"user": USER_SCHEMA, "token": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}),
    Endpoint("POST", "/iot/api/v1/auth/logout", logout, "End this token's login",
             response={"type": "object"}),
    Endpoint("GET", "/iot/api/v1/auth/me", me, "The logged-in user",
             response={"type": "object", "required": ["user"], "properties": {"user": USER_SCHEMA}}),
]
