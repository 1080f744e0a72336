"""How an HTTP endpoint is declared: once, for routing, access control, validation and the OpenAPI document.

A handler receives a `Call` (validated body and query, path params, the principal, the services) and returns
the `data` of the success envelope. It raises `AppError` for anything else; whatever it raises becomes the failure
envelope in `envelope.error_response`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapter.auth.users import Principal, Sessions, bearer
from adapter.errors import AppError
from adapter.http.envelope import decode_json, error_response, ok, read_body
from adapter.http.validation import Param, check_body, check_query
from adapter.jsonlimits import MAX_DEPTH
from adapter.store.connections import Services

Access = Literal["public", "view", "admin"]


@dataclass
class Call:
    request: Request
    svc: Services
    body: Any = None
    query: dict[str, Any] = field(default_factory=dict)
    path: Mapping[str, Any] = field(default_factory=dict)
    principal: Principal | None = None
    token: str | None = None

    @property
    def client_address(self) -> str:
        return self.request.client.host if self.request.client else "unknown"


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access = "view"
    body: Mapping[str, Any] | None = None
    query: tuple[Param, ...] = ()
    response: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    tag: str = "v1"
    errors: tuple[int, ...] = ()
    status: int = 200
    media_type: str = "application/json"  # anything else: the handler returns its own Response
    envelope: bool = True  # False: the handler answers its own JSON (`response` is its schema), e.g. for EMQX

    def route(self) -> Route:
        return Route(self.path, _endpoint_function(self), methods=[self.method], name=self.handler.__name__)


async def authenticate(call: Call, access: Access) -> None:
    if access == "public":
        return
    token = bearer(call.request.headers.get("authorization"))
    principal = await Sessions(call.svc.redis, call.svc.keys, call.svc.settings).resolve(token) if token else None
    if principal is None:
        raise AppError("unauthorized", "a valid bearer token is required",
                       headers={"WWW-Authenticate": "Bearer"})
    if access == "admin" and not principal.can("admin"):
        raise AppError("forbidden", "this needs the admin role")
    call.principal, call.token = principal, token


def _endpoint_function(ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        started = time.perf_counter()
        svc: Services = request.app.state.services
        response = await _answer(ep, svc, request)
        svc.metrics.observe(ep.method, ep.path, time.perf_counter() - started)
        return response

    run.__name__ = ep.handler.__name__
    return run


async def _answer(ep: Endpoint, svc: Services, request: Request) -> Response:
    call = Call(request=request, svc=svc, path=request.path_params)
    try:
        await authenticate(call, ep.access)
        call.query = check_query(ep.query, request.query_params)
        if ep.body is not None:
            raw = await read_body(request, svc.settings.max_body_bytes)
            call.body = check_body(ep.body, decode_json(raw, max_depth=MAX_DEPTH))
        data = await ep.handler(call)
    except Exception as exc:
        return error_response(exc, f"{request.method} {request.url.path}")
    if isinstance(data, Response):
        return data
    return ok(data, ep.status)
