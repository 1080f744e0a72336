"""`DevBrokerConfig`: everything the dev broker needs, read from the environment (docs/design.md §14).

It reads the same variables as the service: `ADAPTER_INGEST_TOKEN` (sent as `Authorization: Bearer …`
with every event and every authn/authz call), `ADAPTER_EMQX_API_KEY` / `ADAPTER_EMQX_API_SECRET`
(accepted on its REST API). An empty or missing key turns the REST API's authentication off (a warning is logged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

DEFAULT_WEBHOOK = "http://127.0.0.1:8000/emqx/events"


@dataclass(frozen=True)
class DevBrokerConfig:
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    api_host: str = "127.0.0.1"
    api_port: int = 18083
    ingest_url: str | None = None
    """Where events are POSTed; None: events are built but not sent."""
    ingest_token: str | None = None
    api_key: str | None = None
    api_secret: str | None = None
    users: Mapping[str, str] | None = None
    """MQTT username -> password; None lets every client in."""
    auth_url: str | None = None
    """Base URL of EMQX-style HTTP authn/authz (`{auth_url}/authn`, `/authz`; e.g.
    http://127.0.0.1:8000/emqx), called with the ingest token; None: no such calls, no authorization."""
    auth_timeout: float = 5.0
    """Seconds an authn/authz call may take; a timeout refuses (EMQX authn `request_timeout`)."""
    authz_cache_ttl: float = 60.0
    """Seconds an authorization decision is reused (EMQX `authorization.cache.ttl`); 0: no cache."""
    message_topics: tuple[str, ...] = ("#",)
    """Topic filters whose messages produce `message.publish` (the rule's FROM)."""
    node: str = "devbroker@127.0.0.1"
    retry_ttl: float = 45.0
    """How long an event is retried on 429/503/connection errors (EMQX `request_ttl`)."""
    session_expiry: int = 7200
    """Seconds an offline persistent session is kept (EMQX `session_expiry_interval`)."""
    max_pending_events: int = 100_000
    shutdown_grace: float = 2.0
    """Seconds given to pending events when stopping."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> DevBrokerConfig:
        def opt(name: str) -> str | None:
            return environ.get(name) or None

        base = cls(ingest_token=opt("ADAPTER_INGEST_TOKEN"), api_key=opt("ADAPTER_EMQX_API_KEY"),
                   api_secret=opt("ADAPTER_EMQX_API_SECRET"))
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown DevBrokerConfig fields: {sorted(unknown)}")
        return replace(base, **overrides)

    @property
    def api_auth(self) -> tuple[str, str] | None:
        """(key, secret) the REST API requires, or None when it is open."""
        if not self.api_key:
            return None
        return self.api_key, self.api_secret or ""
