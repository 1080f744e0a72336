"""EMQX's HTTP authentication and authorization, for the dev broker: an amqtt plugin that asks the
service's `POST {auth_url}/authn` and `POST {auth_url}/authz` (the contract EMQX 5.8 follows, with
`Authorization: Bearer <ADAPTER_INGEST_TOKEN>`).

- Authentication (amqtt `authenticate`): one POST per CONNECT with `{clientid, username, password,
  peerhost}`. Only a 200 answer with `"result": "allow"` lets the client in; deny, ignore, another
  status, a bad body, a timeout or a connection error refuse it with CONNACK 5 (not authorized), as
  EMQX does with HTTP authentication as its only authenticator.
- Authorization (amqtt `topic_filtering`, called for PUBLISH by amqtt and for SUBSCRIBE by
  `DevBroker.add_subscription`): one POST per (client id, action, topic) with `{clientid, username,
  peerhost, topic, action, qos, retain}`; anything but 200 `"allow"` denies (EMQX with `no_match =
  deny`). A denied publish is dropped, a denied subscription gets SUBACK 0x80. Decisions are cached per
  client for `cache_ttl` seconds, at most `CACHE_MAX_SIZE` topics a client (EMQX's cache defaults:
  1 minute, 32); a client's cache is emptied when it connects again. A failed call is not cached.

Like EMQX's placeholders, every value in the bodies is a string ("" for what is absent; qos "0".."2",
retain "true"/"false"). qos and retain come from `AUTHZ_DETAIL`, set by the broker around each check.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx
from amqtt.contexts import Action
from amqtt.mqtt.connack import NOT_AUTHORIZED
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

log = logging.getLogger(__name__)

HTTP_PLUGIN_PATH = "adapter_devtools.devbroker.http_auth.HttpAuthPlugin"
REFUSAL_CODE = "devbroker.refusal_code"
"""Session attribute: the CONNACK code a refused CONNECT gets (the broker's default is 4)."""
CACHE_TTL = 60.0
CACHE_MAX_SIZE = 32
MAX_CACHED_CLIENTS = 100_000
ACTIONS = {Action.PUBLISH: "publish", Action.SUBSCRIBE: "subscribe"}

AUTHZ_DETAIL: ContextVar[tuple[int, bool] | None] = ContextVar("devbroker_authz_detail", default=None)
"""(qos, retain) of the PUBLISH or SUBSCRIBE being authorized, for the authz body."""


@contextlib.contextmanager
def authz_detail(qos: int, retain: bool) -> Iterator[None]:
    token = AUTHZ_DETAIL.set((qos, retain))
    try:
        yield
    finally:
        AUTHZ_DETAIL.reset(token)


# -- pure parts ---------------------------------------------------------------------------------------


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def authn_body(session: Session) -> dict[str, str]:
    return {"clientid": _text(session.client_id), "username": _text(session.username),
            "password": _text(session.password), "peerhost": _text(session.remote_address)}


def authz_body(session: Session, topic: str, action: str, detail: tuple[int, bool] | None) -> dict[str, str]:
    qos, retain = detail if detail is not None else (None, None)
    return {"clientid": _text(session.client_id), "username": _text(session.username),
            "peerhost": _text(session.remote_address), "topic": topic, "action": action,
            "qos": _text(qos), "retain": "" if retain is None else str(retain).lower()}


def is_allow(status: int, body: object) -> bool:
    """EMQX's reading of an answer, reduced to yes/no: only 200 with `"result": "allow"` is a yes."""
    return status == 200 and isinstance(body, dict) and body.get("result") == "allow"


@dataclass
class AuthzCache:
    """Authorization decisions per client: (action, topic) -> (allowed, expires at), oldest first."""

    ttl: float = CACHE_TTL
    max_size: int = CACHE_MAX_SIZE
    max_clients: int = MAX_CACHED_CLIENTS
    _clients: OrderedDict[str, OrderedDict[tuple[str, str], tuple[bool, float]]] = field(
        default_factory=OrderedDict)

    def get(self, clientid: str, action: str, topic: str, now: float) -> bool | None:
        entries = self._clients.get(clientid)
        entry = entries.get((action, topic)) if entries is not None else None
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, clientid: str, action: str, topic: str, allowed: bool, now: float) -> None:
        if self.ttl <= 0:
            return
        entries = self._clients.setdefault(clientid, OrderedDict())
        self._clients.move_to_end(clientid)
        entries.pop((action, topic), None)
        entries[(action, topic)] = (allowed, now + self.ttl)
        while len(entries) > self.max_size:
            entries.popitem(last=False)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def forget(self, clientid: str) -> None:
        self._clients.pop(clientid, None)


# -- the plugin ---------------------------------------------------------------------------------------


class HttpAuthPlugin(BaseAuthPlugin, BaseTopicPlugin):
    @dataclass
    class Config:
        url: str
        """Base URL; `/authn` and `/authz` are appended (e.g. http://127.0.0.1:8000/emqx)."""
        token: str | None = None
        timeout: float = 5.0
        cache_ttl: float = CACHE_TTL

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.cache = AuthzCache(ttl=self.config.cache_ttl)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"authorization": f"Bearer {self.config.token}"} if self.config.token else {}
            self._client = httpx.AsyncClient(base_url=self.config.url.rstrip("/"), headers=headers,
                                             timeout=httpx.Timeout(self.config.timeout), trust_env=False,
                                             limits=httpx.Limits(max_connections=32, max_keepalive_connections=8))
        return self._client

    async def _ask(self, path: str, body: dict[str, str]) -> bool | None:
        """True/False: the service's decision; None: no decision (transport error)."""
        try:
            response = await self._http().post(path, json=body)
        except httpx.HTTPError as exc:
            log.warning("devbroker: %s%s did not answer (%r); refusing", self.config.url, path, exc)
            return None
        try:
            answer = response.json() if response.status_code == 200 else None
        except ValueError:
            answer = None
        return is_allow(response.status_code, answer)

    async def authenticate(self, *, session: Session) -> bool | None:
        self.cache.forget(session.client_id or "")
        allowed = bool(await self._ask("/authn", authn_body(session)))
        if not allowed:
            session.attributes[REFUSAL_CODE] = NOT_AUTHORIZED
        return allowed

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        name = ACTIONS.get(action) if action is not None else None
        if name is None or session is None or topic is None:
            return True  # RECEIVE (deliveries) is not authorized, as in EMQX
        clientid = session.client_id or ""
        cached = self.cache.get(clientid, name, topic, time.monotonic())
        if cached is not None:
            return cached
        decision = await self._ask("/authz", authz_body(session, topic, name, AUTHZ_DETAIL.get()))
        if decision is not None:
            self.cache.put(clientid, name, topic, decision, time.monotonic())
        return bool(decision)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def plugin_config(url: str, token: str | None, timeout: float, cache_ttl: float) -> dict[str, Any]:
    return {"url": url, "token": token, "timeout": timeout, "cache_ttl": cache_ttl}
