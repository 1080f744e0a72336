"""The EMQX REST subset the adapter uses, as a Starlette app, plus `/devbroker/stats`.

Everything but `GET /api/v5/status` needs `Authorization: Basic base64(key:secret)` when a key is
configured (401 bodies as EMQX's dashboard gives them). Handlers are thin: parse with `publish.py` /
`views.py`, call the broker, format.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapter_devtools.devbroker import monitor
from adapter_devtools.devbroker.broker import DevBroker
from adapter_devtools.devbroker.channels import Channel
from adapter_devtools.devbroker.config import DevBrokerConfig
from adapter_devtools.devbroker.delivery import EventPoster
from adapter_devtools.devbroker.publish import (
    PublishError,
    bad_request,
    bulk_status,
    parse_bulk,
    parse_publish,
    publish_result,
)
from adapter_devtools.devbroker.views import SessionFigures, client_item, page_of, parse_client_query, selects

OPEN_PATHS = frozenset({"/api/v5/status"})
HEADER_ERROR = {"code": "AUTHORIZATION_HEADER_ERROR", "message": "Support authorization: basic/bearer "}
BAD_KEY = {"code": "BAD_API_KEY_OR_SECRET", "message": "Check api_key/api_secret"}
BAD_TOKEN = {"code": "BAD_TOKEN", "message": "Get a token by POST /login"}
NOT_FOUND = {"code": "CLIENTID_NOT_FOUND", "message": "Client ID not found"}


@dataclass
class ApiState:
    broker: DevBroker
    poster: EventPoster
    config: DevBrokerConfig


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def auth_failure(header: str | None, credentials: tuple[str, str]) -> dict[str, str] | None:
    """None when `header` carries the right key and secret, else EMQX's 401 body."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() == "bearer":
        return BAD_TOKEN
    if scheme.lower() != "basic":
        return HEADER_ERROR
    try:
        key, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return BAD_KEY
    good = hmac.compare_digest(key.encode(), credentials[0].encode())
    good &= hmac.compare_digest(secret.encode(), credentials[1].encode())
    return None if good else BAD_KEY


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, credentials: tuple[str, str] | None) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.credentials and scope["path"] not in OPEN_PATHS:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1") or None
            failure = auth_failure(header, self.credentials)
            if failure is not None:
                headers = {"www-authenticate": 'Basic Realm="emqx-dashboard"'}
                await json_response(failure, 401, headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.devbroker
    return state


async def _body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise bad_request("request body is not valid JSON") from None


async def status(request: Request) -> Response:
    node = _state(request).config.node
    if request.query_params.get("format") == "json":
        return json_response({"node_name": node, "rel_vsn": "5.8.9", "broker_status": "started",
                              "app_status": "running"})
    return PlainTextResponse(f"Node {node} is started\nemqx is running")


async def publish(request: Request) -> Response:
    state = _state(request)
    try:
        message = parse_publish(await _body(request))
    except PublishError as exc:
        return json_response(exc.body, exc.status)
    guid, recipients = await state.broker.publish_api(message.topic, message.payload, message.qos, message.retain)
    code, body = publish_result(guid, recipients)
    return json_response(body, code)


async def publish_bulk(request: Request) -> Response:
    state = _state(request)
    try:
        messages = parse_bulk(await _body(request))
    except PublishError as exc:
        return json_response(exc.body, exc.status)
    results = [publish_result(*await state.broker.publish_api(m.topic, m.payload, m.qos, m.retain))
               for m in messages]
    return json_response([body for _, body in results], bulk_status([code for code, _ in results]))


def _item(state: ApiState, row: Channel) -> dict[str, Any]:
    session = row.conn.session
    figures = SessionFigures(state.broker.subscription_count(session), session.retained_messages.qsize(),
                             len(session.inflight_out))
    return client_item(row, state.config.node, figures)


async def clients(request: Request) -> Response:
    state = _state(request)
    try:
        query = parse_client_query(list(request.query_params.multi_items()))
    except ValueError as exc:
        return json_response({"code": "INVALID_PARAMETER", "message": str(exc)}, 400)
    rows = sorted(state.broker.channel_list(), key=lambda row: row.conn.clientid)
    return json_response(page_of(query, [_item(state, row) for row in rows if selects(query, row)]))


async def client(request: Request) -> Response:
    state = _state(request)
    clientid = request.path_params["clientid"]
    if request.method == "DELETE":
        return Response(status_code=204) if await state.broker.kick_client(clientid) else json_response(NOT_FOUND, 404)
    for row in state.broker.channel_list():
        if row.conn.clientid == clientid:
            return json_response(_item(state, row))
    return json_response(NOT_FOUND, 404)


def _aggregate(request: Request) -> bool:
    return request.query_params.get("aggregate", "false").lower() == "true"


async def nodes(request: Request) -> Response:
    state = _state(request)
    return json_response(monitor.nodes(state.broker, state.config.node))


async def stats(request: Request) -> Response:
    state = _state(request)
    body = monitor.stats(state.broker)
    if _aggregate(request):
        return json_response(body)
    return json_response([{"node": state.config.node, **body, "durable_subscriptions.count": 0}])


async def metrics(request: Request) -> Response:
    state = _state(request)
    body = state.broker.counters.metrics_view()
    return json_response(body if _aggregate(request) else [{"node": state.config.node, **body}])


async def devbroker_stats(request: Request) -> Response:
    state = _state(request)
    return json_response({**state.broker.counters.dev_view(), "events.pending": state.poster.pending,
                          "connections.live": len(state.broker.channels.live),
                          "ingest_url": state.config.ingest_url})


ROUTES = [
    Route("/api/v5/status", status, methods=["GET"]),
    Route("/api/v5/publish", publish, methods=["POST"]),
    Route("/api/v5/publish/bulk", publish_bulk, methods=["POST"]),
    Route("/api/v5/nodes", nodes, methods=["GET"]),
    Route("/api/v5/stats", stats, methods=["GET"]),
    Route("/api/v5/metrics", metrics, methods=["GET"]),
    Route("/api/v5/clients", clients, methods=["GET"]),
    Route("/api/v5/clients/{clientid:path}", client, methods=["GET", "DELETE"]),
    Route("/devbroker/stats", devbroker_stats, methods=["GET"]),
]


def create_app(state: ApiState) -> ASGIApp:
    app = Starlette(routes=ROUTES)
    app.state.devbroker = state
    return ApiKeyAuth(app, state.config.api_auth)
