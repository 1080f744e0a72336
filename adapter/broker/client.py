"""The EMQX 5 REST client (`/api/v5`): broker state for monitoring, and publishing for commands.

One `EmqxClient` per process (`broker_client(svc)`), HTTP Basic with the API key, explicit timeouts.
Every call is bounded by `settings.emqx_timeout` as a whole, not only per socket operation.

What callers see when EMQX fails:
- reads (`nodes`, `stats`, `metrics`, `clients`): any failure is `AppError("broker_unavailable")` (502):
  connection refused or reset, timeout, an HTTP status other than 200, or a body that is not the JSON
  shape EMQX documents.
- `publish` / `publish_bulk`: EMQX's answers 200 (sent), 202 (no matching subscribers), 400 (rejected)
  and 503 (dispatch failed, retry) are results (`PublishResult`), never exceptions; only connection
  failures, timeouts and other statuses (401, 404, 500, ...) raise `broker_unavailable`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import orjson

import adapter.broker.views as views
from adapter.errors import AppError
from adapter.settings import Settings
from adapter.store.connections import Services

log = logging.getLogger("adapter.broker.client")

NO_MATCHING_SUBSCRIBERS = 16
"""MQTT reason code EMQX gives with 202."""


def unavailable(reason: str) -> AppError:
    return AppError("broker_unavailable", reason)


class PublishOutcome(StrEnum):
    SENT = "sent"  # 200: dispatched to at least one subscriber (or an offline persistent session)
    NO_SUBSCRIBERS = "no_subscribers"  # 202: published, but no subscription matched
    REJECTED = "rejected"  # 400: invalid topic, payload too large, bad request; nothing was published
    RETRY = "retry"  # 503: subscriptions matched but every dispatch failed (e.g. EMQX restarting)


@dataclass(frozen=True)
class PublishResult:
    outcome: PublishOutcome
    id: str | None = None
    reason_code: int | None = None
    message: str = ""

    @property
    def published(self) -> bool:
        """EMQX accepted the message (whether or not anyone was subscribed)."""
        return self.outcome in (PublishOutcome.SENT, PublishOutcome.NO_SUBSCRIBERS)


@dataclass(frozen=True)
class BulkResult:
    """`outcome` is the batch's HTTP answer; `items` are per message, in request order."""

    outcome: PublishOutcome
    items: tuple[PublishResult, ...]


@dataclass(frozen=True)
class Message:
    """One message for `/publish`: a `str` payload is sent as is, `bytes` as base64."""

    topic: str
    payload: str | bytes
    qos: int = 0
    retain: bool = False
    properties: Mapping[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"topic": self.topic, "qos": self.qos, "retain": self.retain}
        if isinstance(self.payload, bytes):
            out["payload"] = base64.b64encode(self.payload).decode("ascii")
            out["payload_encoding"] = "base64"
        else:
            out["payload"] = self.payload
        if self.properties:
            out["properties"] = dict(self.properties)
        return out


@dataclass(frozen=True)
class ClientPage:
    """One page of `/clients`: `count` is the total when EMQX reports it (not with fuzzy filters)."""

    items: list[dict[str, Any]]
    page: int
    limit: int
    count: int | None
    hasnext: bool


_PUBLISH_STATUS = {200: PublishOutcome.SENT, 202: PublishOutcome.NO_SUBSCRIBERS,
                   400: PublishOutcome.REJECTED, 503: PublishOutcome.RETRY}


def _details(body: Any) -> tuple[str | None, int | None, str]:
    """(id, reason_code, message) of one EMQX publish answer: `{"id"}` or `{"reason_code","message"}`."""
    if not isinstance(body, dict):
        return None, None, ""
    ident, code, text = body.get("id"), body.get("reason_code"), body.get("message")
    return (ident if isinstance(ident, str) else None,
            code if isinstance(code, int) and not isinstance(code, bool) else None,
            text if isinstance(text, str) else "")


def classify_publish(status: int, body: Any) -> PublishResult:
    """The answer of `POST /publish` (status one of 200, 202, 400, 503); the status decides."""
    outcome = _PUBLISH_STATUS[status]
    ident, code, text = _details(body)
    return PublishResult(outcome, ident if outcome is PublishOutcome.SENT else None, code, text)


def bulk_item(item: Any) -> PublishResult:
    """One entry of a `/publish/bulk` answer array: sent, no subscribers, or failed to dispatch."""
    ident, code, text = _details(item)
    if ident is not None:
        return PublishResult(PublishOutcome.SENT, ident)
    if code == NO_MATCHING_SUBSCRIBERS:
        return PublishResult(PublishOutcome.NO_SUBSCRIBERS, None, code, text)
    return PublishResult(PublishOutcome.RETRY, None, code, text)


def classify_bulk(status: int, body: Any, size: int) -> BulkResult:
    """The answer of `POST /publish/bulk` for `size` messages. A 400 refuses the whole batch."""
    outcome = _PUBLISH_STATUS[status]
    if outcome is PublishOutcome.REJECTED:
        return BulkResult(outcome, (classify_publish(status, body),) * size)
    if not isinstance(body, list) or len(body) != size:
        return BulkResult(outcome, (PublishResult(outcome),) * size)
    if outcome is PublishOutcome.SENT:
        return BulkResult(outcome, tuple(PublishResult(outcome, _details(item)[0]) for item in body))
    return BulkResult(outcome, tuple(bulk_item(item) for item in body))


def aggregate(answer: Any) -> dict[str, Any]:
    """`/stats` or `/metrics`: the aggregated object, or the per-node array summed key by key."""
    if isinstance(answer, dict):
        return answer
    if not isinstance(answer, list) or not all(isinstance(row, dict) for row in answer):
        raise unavailable("EMQX sent an unexpected answer")
    total: dict[str, Any] = {}
    for row in answer:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


def _status_reason(status: int) -> str:
    if status in (401, 403):
        return f"EMQX refused the API key (HTTP {status})"
    return f"EMQX answered HTTP {status}"


def _decode(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


class EmqxClient:
    def __init__(self, base_url: str, api_key: str, api_secret: str, timeout: float,
                 *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url, auth=httpx.BasicAuth(api_key, api_secret), timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
            headers={"accept": "application/json"}, trust_env=False, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings, *,
                      transport: httpx.AsyncBaseTransport | None = None) -> EmqxClient:
        return cls(settings.emqx_api_url, settings.emqx_api_key, settings.emqx_api_secret,
                   settings.emqx_timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EmqxClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def nodes(self) -> list[dict[str, Any]]:
        answer = await self._get("/nodes")
        if not isinstance(answer, list) or not all(isinstance(n, dict) for n in answer):
            raise unavailable("EMQX sent an unexpected answer")
        return answer

    async def stats(self) -> dict[str, Any]:
        return aggregate(await self._get("/stats", {"aggregate": "true"}))

    async def metrics(self) -> dict[str, Any]:
        return aggregate(await self._get("/metrics", {"aggregate": "true"}))

    async def clients(self, page: int = 1, limit: int = 100, *, conn_state: str | None = None,
                      clientid: Sequence[str] = (), username: Sequence[str] = (),
                      node: str | None = None, fields: Sequence[str] = (),
                      like_clientid: str | None = None) -> ClientPage:
        params: list[tuple[str, str | int]] = [("page", page), ("limit", limit)]
        if fields:
            params.append(("fields", ",".join(fields)))
        params += [("clientid", c) for c in clientid] + [("username", u) for u in username]
        params += [(k, v) for k, v in (("conn_state", conn_state), ("node", node), ("like_clientid", like_clientid))
                   if v is not None]
        answer = await self._get("/clients", params)
        data = answer.get("data") if isinstance(answer, dict) else None
        meta = answer.get("meta") if isinstance(answer, dict) else None
        if not (isinstance(data, list) and isinstance(meta, dict) and all(isinstance(c, dict) for c in data)):
            raise unavailable("EMQX sent an unexpected answer")
        count = meta.get("count")
        return ClientPage(items=data, page=page, limit=limit,
                          count=count if isinstance(count, int) and not isinstance(count, bool) else None,
                          hasnext=meta.get("hasnext") is True)

    async def client(self, clientid: str) -> dict[str, Any] | None:
        """`GET /clients/{clientid}`: the client's channel, or None when EMQX does not know it (404)."""
        response = await self._request("GET", f"/clients/{quote(clientid, safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise unavailable(_status_reason(response.status_code))
        answer = _decode(response)
        if not isinstance(answer, dict):
            raise unavailable("EMQX sent an unexpected answer")
        return answer

    async def publish(self, topic: str, payload: str | bytes, *, qos: int = 0, retain: bool = False,
                      properties: Mapping[str, Any] | None = None) -> PublishResult:
        body = Message(topic, payload, qos, retain, properties).body()
        response = await self._send("POST", "/publish", body)
        return classify_publish(response.status_code, _decode(response))

    async def publish_bulk(self, messages: Sequence[Message]) -> BulkResult:
        """One request. EMQX validates the whole batch first: one invalid message → all rejected."""
        if not messages:
            return BulkResult(PublishOutcome.SENT, ())
        response = await self._send("POST", "/publish/bulk", [m.body() for m in messages])
        return classify_bulk(response.status_code, _decode(response), len(messages))

    async def _get(self, path: str, params: Any = None) -> Any:
        response = await self._request("GET", path, params=params)
        if response.status_code != 200:
            log.warning("EMQX GET %s answered %s: %.200s", path, response.status_code, response.text)
            raise unavailable(_status_reason(response.status_code))
        answer = _decode(response)
        if answer is None:
            raise unavailable("EMQX sent an unreadable answer")
        return answer

    async def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        response = await self._request(method, path, content=orjson.dumps(body),
                                       headers={"content-type": "application/json"})
        if response.status_code not in _PUBLISH_STATUS:
            log.warning("EMQX %s %s answered %s: %.200s", method, path, response.status_code, response.text)
            raise unavailable(_status_reason(response.status_code))
        return response

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._http.request(method, path, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            log.warning("EMQX %s %s: no answer within %s s", method, path, self.timeout)
            raise unavailable(f"EMQX did not answer within {self.timeout:g} s") from None
        except httpx.ConnectError as exc:
            log.warning("EMQX %s %s: cannot connect: %s", method, path, exc)
            raise unavailable("EMQX is not reachable") from None
        except httpx.HTTPError as exc:
            log.warning("EMQX %s %s: %s: %s", method, path, type(exc).__name__, exc)
            raise unavailable("the connection to EMQX failed") from None


def broker_client(svc: Services) -> EmqxClient:
    """The process's one client, made on first use and closed with the services."""
    client = svc.extras.get("broker")
    if not isinstance(client, EmqxClient):
        client = svc.extras["broker"] = EmqxClient.from_settings(svc.settings)
    return client


# Monitoring reads: one EMQX-backed answer per v1 endpoint (seed "MQTT Monitoring").

async def monitor_stats(client: EmqxClient) -> dict[str, Any]:
    stats, metrics, nodes = await asyncio.gather(client.stats(), client.metrics(), client.nodes())
    return views.stats_view(stats, metrics, nodes)


async def monitor_nodes(client: EmqxClient) -> dict[str, Any]:
    return views.nodes_view(await client.nodes(), datetime.now(UTC))


async def monitor_connections(client: EmqxClient, page: int, limit: int, *, client_id: str | None = None,
                              username: str | None = None, like_client_id: str | None = None) -> dict[str, Any]:
    found = await client.clients(page, limit, conn_state="connected", clientid=_one(client_id),
                                 username=_one(username), like_clientid=like_client_id or None)
    return _page([views.connection_view(c) for c in found.items], found)


async def monitor_sessions(client: EmqxClient, page: int, limit: int, *, client_id: str | None = None,
                           username: str | None = None, like_client_id: str | None = None) -> dict[str, Any]:
    found = await client.clients(page, limit, clientid=_one(client_id), username=_one(username),
                                 like_clientid=like_client_id or None)
    return _page([views.session_view(c) for c in found.items], found)


def _one(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _page(items: list[dict[str, Any]], found: ClientPage) -> dict[str, Any]:
    total = views.page_total(found.page, found.limit, len(items), found.count, found.hasnext)
    return views.page_view(items, found.page, found.limit, total)
