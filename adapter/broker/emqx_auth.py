"""Who may connect to EMQX and what each client may do there, as pure decisions for EMQX's HTTP
authentication and authorization (the I/O is in `credentials.py` and `api/emqx_hooks.py`).

Two kinds of clients:
- Devices. A device's sn is its MQTT client id; its user name is the sn or empty; its password is the
  secret issued by `POST /iot/api/v1/devices/credentials`. It may publish only `dma/report/{sn}/…` and
  `dma/resp/cmd`, and subscribe only to `dma/cmd/{sn}` (docs/design.md §3).
- Configured clients (the console, tools, a simulator), by user name, from `ADAPTER_MQTT_CLIENTS`: a JSON
  list of `{"username", "password"?, "publish": [filters], "subscribe": [filters]}`. Filters may hold
  `{clientid}` and `{username}`, replaced by the client's own (only when that is a valid sn-like name,
  so a client id cannot smuggle in wildcards). Without `password` the adapter leaves authentication to
  EMQX's next authenticator ("ignore") and only authorizes.

Answers are EMQX's: "allow", "deny", or "ignore" (not ours to decide: EMQX asks its next authenticator or
source; with none, the client is refused).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from adapter.auth.users import check_name
from adapter.errors import AppError, invalid
from adapter.protocol import topics, uplink
from adapter.settings import ConfigError

Result = Literal["allow", "deny", "ignore"]
PLACEHOLDERS = ("{clientid}", "{username}")
SETTING = "ADAPTER_MQTT_CLIENTS"


@dataclass(frozen=True, slots=True)
class ClientRule:
    """A configured (non-device) client: its password (None: checked elsewhere) and its topic filters."""

    username: str
    password: str | None
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthPolicy:
    clients: Mapping[str, ClientRule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuthnRequest:
    clientid: str
    username: str
    password: str
    peerhost: str = ""  # the client's address as EMQX saw it ("" when not sent)


@dataclass(frozen=True, slots=True)
class AuthzRequest:
    clientid: str
    username: str
    topic: str
    action: str  # publish | subscribe


# --- the configured clients ------------------------------------------------------------------------


def parse_clients(raw: str) -> AuthPolicy:
    """The policy from the `ADAPTER_MQTT_CLIENTS` value ("" or "[]": no configured clients)."""
    if not raw.strip():
        return AuthPolicy()
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ConfigError(f"{SETTING} must be a JSON list of clients") from None
    if not isinstance(items, list):
        raise ConfigError(f"{SETTING} must be a JSON list of clients")
    clients: dict[str, ClientRule] = {}
    for n, item in enumerate(items):
        rule = _client(n, item)
        if rule.username in clients:
            raise ConfigError(f"{SETTING}[{n}]: user name {rule.username!r} appears twice")
        clients[rule.username] = rule
    return AuthPolicy(clients)


def _client(n: int, item: Any) -> ClientRule:
    where = f"{SETTING}[{n}]"
    if not isinstance(item, dict) or set(item) - {"username", "password", "publish", "subscribe"}:
        raise ConfigError(f"{where}: an object with username, password (optional), publish and subscribe")
    username, password = item.get("username"), item.get("password")
    if not isinstance(username, str) or not is_name(username):
        raise ConfigError(f"{where}.username: 1-64 letters, digits or . _ - @")
    if password is not None and (not isinstance(password, str) or len(password) < 8):
        raise ConfigError(f"{where}.password: a string of at least 8 characters, or absent")
    publish, subscribe = _filters(where, item, "publish"), _filters(where, item, "subscribe")
    return ClientRule(username, password, publish, subscribe)


def _filters(where: str, item: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = item.get(name, [])
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise ConfigError(f"{where}.{name}: a list of topic filters")
    for f in value:
        try:
            topics.validate_filter(_fill(f, "x", "x"))
        except AppError:
            raise ConfigError(f"{where}.{name}: {f!r} is not a valid topic filter") from None
    return tuple(value)


# --- request bodies ---------------------------------------------------------------------------------


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise invalid(f"{name}: must be a string")
    if required and not value:
        raise invalid(f"{name}: is required")
    return value


def _object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise invalid("body: must be a JSON object")
    return body


def parse_authn(body: object) -> AuthnRequest:
    """EMQX's authentication body (`clientid`, `username`, `password`, `peerhost`; EMQX sends "" for what
    is absent)."""
    b = _object(body)
    return AuthnRequest(_text(b, "clientid", required=True), _text(b, "username"), _text(b, "password"),
                        _text(b, "peerhost"))


def parse_authz(body: object) -> AuthzRequest:
    b = _object(body)
    return AuthzRequest(_text(b, "clientid", required=True), _text(b, "username"),
                        _text(b, "topic", required=True), _text(b, "action", required=True))


# --- decisions --------------------------------------------------------------------------------------


def is_name(value: str) -> bool:
    """A valid sn or user name (the rule of `auth.check_name`): it can never hold `/`, `+`, `#` or `$`."""
    try:
        check_name(value)
    except AppError:
        return False
    return True


def device_sn(clientid: str, username: str) -> str | None:
    """The sn a client claims to be: its client id, when that is a valid sn and the user name is empty or
    the same. None: not a device of ours."""
    if username not in ("", clientid) or not is_name(clientid):
        return None
    return clientid


def authn_configured(policy: AuthPolicy, req: AuthnRequest) -> Result | None:
    """The answer for a configured client; None when the user name is not configured."""
    rule = policy.clients.get(req.username)
    if rule is None:
        return None
    if rule.password is None:
        return "ignore"
    good = hmac.compare_digest(req.password.encode(), rule.password.encode())
    return "allow" if good else "deny"


def authorize(policy: AuthPolicy, req: AuthzRequest) -> Result:
    rule = policy.clients.get(req.username) if req.username else None
    if rule is not None:
        return "allow" if configured_may(rule, req) else "deny"
    sn = device_sn(req.clientid, req.username)
    if sn is None:
        return "ignore"
    return "allow" if device_may(sn, req.action, req.topic) else "deny"


def device_may(sn: str, action: str, topic: str) -> bool:
    """A device publishes its own reports and command responses and subscribes to its own commands."""
    if topics.has_wildcard(topic) and action != "subscribe":
        return False
    if action == "publish":
        prefix = f"{uplink.REPORT_PREFIX}{sn}/"
        return (topic.startswith(prefix) and len(topic) > len(prefix)) or topic == uplink.RESPONSE_TOPIC
    if action == "subscribe":
        return topic == uplink.command_topic(sn)
    return False


def configured_may(rule: ClientRule, req: AuthzRequest) -> bool:
    if req.action == "publish":
        if topics.has_wildcard(req.topic):
            return False
        return any(topics.matches(f, req.topic) for f in _own(rule.publish, req))
    if req.action == "subscribe":
        return any(covers(f, req.topic) for f in _own(rule.subscribe, req))
    return False


def _own(filters: tuple[str, ...], req: AuthzRequest) -> list[str]:
    """The filters with the client's placeholders filled in, less those whose placeholder value is unsafe."""
    out = []
    for f in filters:
        if "{clientid}" in f and not is_name(req.clientid):
            continue
        if "{username}" in f and not is_name(req.username):
            continue
        out.append(_fill(f, req.clientid, req.username))
    return out


def _fill(topic_filter: str, clientid: str, username: str) -> str:
    return topic_filter.replace("{clientid}", clientid).replace("{username}", username)


def covers(allowed: str, requested: str) -> bool:
    """Whether every topic that `requested` (a subscription filter) matches is also matched by `allowed`."""
    want = requested.split("/")
    if want[0].startswith("$") and allowed.split("/")[0] in ("+", "#"):
        return False
    for i, level in enumerate(allowed.split("/")):
        if level == "#":
            return True
        if i >= len(want) or want[i] == "#":
            return False
        if level != "+" and level != want[i]:
            return False
    return len(want) == len(allowed.split("/"))
