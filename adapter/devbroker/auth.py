"""MQTT client authentication: the dev broker's own amqtt auth plugin.

amqtt refuses every client when plugins are configured and none authenticates, and its anonymous
plugin flags sessions `is_anonymous`, which stops offline QoS 1 queueing for persistent sessions.
This plugin allows everyone by default, or checks a username -> password map (constant-time).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

PLUGIN_PATH = "adapter.devbroker.auth.DevAuthPlugin"


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
