"""MQTT client authentication: the dev broker's own amqtt auth plugin.

amqtt refuses every client when plugins are configured and none authenticates, and its anonymous
plugin flags sessions `is_anonymous`, which stops offline QoS 1 queueing for persistent sessions.
This plugin allows everyone by default, or checks a username -> password map (constant-time).
`plugins(config)` is the broker's plugin table: this plugin, plus `http_auth.HttpAuthPlugin` (the
service's `/emqx/authn` and `/emqx/authz`) when `auth_url` is set; with both, a client needs both.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from adapter_devtools.devbroker.config import DevBrokerConfig
from adapter_devtools.devbroker.http_auth import HTTP_PLUGIN_PATH, plugin_config

PLUGIN_PATH = "adapter_devtools.devbroker.auth.DevAuthPlugin"


def check_credentials(users: dict[str, str] | None, username: str | None, password: str | None) -> bool:
    if users is None:
        return True
    if username is None or username not in users:
        return False
    return hmac.compare_digest((password or "").encode(), users[username].encode())


class DevAuthPlugin(BaseAuthPlugin):
    @dataclass
    class Config:
        users: dict[str, str] | None = field(default=None)

    async def authenticate(self, *, session: Session) -> bool:
        return check_credentials(self.config.users, session.username, session.password)


def plugins(config: DevBrokerConfig) -> dict[str, dict[str, Any]]:
    """amqtt's `plugins` section for this configuration."""
    table = {PLUGIN_PATH: {"users": dict(config.users) if config.users is not None else None}}
    if config.auth_url:
        table[HTTP_PLUGIN_PATH] = plugin_config(config.auth_url, config.ingest_token, config.auth_timeout,
                                                config.authz_cache_ttl)
    return table
