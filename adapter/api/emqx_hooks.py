"""`POST /emqx/authn` and `POST /emqx/authz`: EMQX's HTTP authentication and authorization call these
(emqx-config/auth.hocon) with the same shared secret as the ingest (`Authorization: Bearer`
ADAPTER_INGEST_TOKEN). The answer is EMQX's contract, not the v1 envelope: 200 with
`{"result": "allow" | "deny" | "ignore"}` (`"is_superuser": false` with an authn allow).

When Redis does not answer, or too many secrets are being checked already (throttle.VerifyLimiter),
authentication answers "ignore": EMQX then asks its next authenticator, and
with none (the shipped configuration) refuses the connect, so devices retry later; clients already
connected are not affected. After too many failed checks for one sn or from one `peerhost`
(credentials.authn_buckets) it answers "deny" at once, without checking the secret. Authorization never
touches Redis (its rules depend only on the client id, the user name and ADAPTER_MQTT_CLIENTS), so it keeps
answering.

Anything else that is not a decision (wrong token: 401, malformed body: 400) EMQX also treats as "ignore".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions

from adapter.api.ingest import check_token
from adapter.broker import emqx_auth
from adapter.broker.credentials import Busy, CredentialStore, Locked, VerifyLimiter, authn_buckets
from adapter.broker.emqx_auth import AuthPolicy, Result
from adapter.http.endpoint import Call, Endpoint
from adapter.http.envelope import JSONResponse, decode_json, read_body

log = logging.getLogger("adapter.emqx_hooks")

EXTRA = "emqx_auth"
DEFAULT_CACHE_TTL = 86400  # s after a device's last connect (credentials.py says why it can be long)
MAX_BODY = 16 * 1024


@dataclass
class HookState:
    """Per-process state of the hooks: the parsed policy and the bound on concurrent argon2id checks (this
    one's own: logins have another)."""

    policy: AuthPolicy
    cache_ttl: int = DEFAULT_CACHE_TTL
    limiter: VerifyLimiter = field(default_factory=VerifyLimiter)


def state_of(call: Call) -> HookState:
    state = call.svc.extras.get(EXTRA)
    if state is None:  # once per process: `adapter api` checked the clients before serving
        s = call.svc.settings
        state = HookState(emqx_auth.parse_clients(s.mqtt_clients), s.authn_cache_ttl,
                          VerifyLimiter(s.authn_verify_concurrency, s.authn_verify_queue))
        call.svc.extras[EXTRA] = state
    assert isinstance(state, HookState)
    return state


def answer(result: Result, **extra: Any) -> JSONResponse:
    return JSONResponse({"result": result, **extra})


async def _body(call: Call) -> Any:
    check_token(call)
    return decode_json(await read_body(call.request, MAX_BODY))


async def emqx_authn(call: Call) -> JSONResponse:
    req = emqx_auth.parse_authn(await _body(call))
    state = state_of(call)
    result = emqx_auth.authn_configured(state.policy, req)
    if result is None:
        result = await _authn_device(call, state, req)
    call.svc.metrics.inc(f'emqx_authn_total{{result="{result}"}}')
    return answer(result, is_superuser=False) if result == "allow" else answer(result)


async def _authn_device(call: Call, state: HookState, req: emqx_auth.AuthnRequest) -> Result:
    sn = emqx_auth.device_sn(req.clientid, req.username)
    if sn is None:
        return "ignore"
    store = CredentialStore(call.svc.redis, call.svc.keys)
    buckets = authn_buckets(call.svc.keys, call.svc.settings, sn, req.peerhost)
    try:
        good = await store.verify(sn, req.password, cache_ttl=state.cache_ttl, limiter=state.limiter,
                                  buckets=buckets)
    except (redis.exceptions.RedisError, OSError) as exc:  # any Redis failure: let EMQX decide (ignore)
        log.warning("authn of %s: Redis does not answer (%s); answering ignore", sn, exc)
        call.svc.metrics.inc("emqx_authn_redis_unavailable_total")
        return "ignore"
    except Busy:
        call.svc.metrics.inc("emqx_authn_busy_total")
        return "ignore"
    except Locked:
        call.svc.metrics.inc("emqx_authn_throttled_total")
        return "deny"
    if good is None:
        return "ignore"
    return "allow" if good else "deny"


async def emqx_authz(call: Call) -> JSONResponse:
    req = emqx_auth.parse_authz(await _body(call))
    result = emqx_auth.authorize(state_of(call).policy, req)
    call.svc.metrics.inc(f'emqx_authz_total{{result="{result}",action="{_action(req.action)}"}}')
    return answer(result)


def _action(action: str) -> str:
    return action if action in ("publish", "subscribe") else "other"


_RESULT = {"type": "object", "required": ["result"],
           "properties": {"result": {"enum": ["allow", "deny", "ignore"]}, "is_superuser": {"const": False}}}
_ERRORS = (400, 401, 413)

ENDPOINTS = [
    Endpoint("POST", "/emqx/authn", emqx_authn,
             "EMQX HTTP authentication of an MQTT client (Bearer = ADAPTER_INGEST_TOKEN); answers "
             '{"result": ...} without the envelope', access="public", tag="emqx", errors=_ERRORS,
             response=_RESULT, envelope=False),
    Endpoint("POST", "/emqx/authz", emqx_authz,
             "EMQX HTTP authorization of a publish or subscribe (Bearer = ADAPTER_INGEST_TOKEN); answers "
             '{"result": ...} without the envelope', access="public", tag="emqx", errors=_ERRORS,
             response=_RESULT, envelope=False),
]
