"""Channels: the dev broker's record of connections, live and recently ended (EMQX's channel table).

A `Conn` is one accepted MQTT connection: its facts (`ConnInfo`), the amqtt session and protocol
handler serving it, the TCP `Link`, and how it ended (`reason`, `disconnected_at`, `ended`).
`Channels` maps a client id to its live connection and to its latest one, so that an offline
persistent session can still be listed (EMQX lists such sessions with `connected: false`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqtt.session import Session

from adapter_devtools.devbroker.link import Link
from adapter_devtools.devbroker.model import ConnInfo

if TYPE_CHECKING:
    from adapter_devtools.devbroker.handler import DevHandler

CREATED_AT = "devbroker.created_at"
"""Session attribute: when the session was created, ms."""


@dataclass(eq=False)
class Conn:
    info: ConnInfo
    session: Session
    handler: DevHandler
    link: Link
    created_at: int
    reason: str | None = None
    disconnected_at: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    watchdog: asyncio.Task[None] | None = None

    @property
    def clientid(self) -> str:
        return self.info.clientid


@dataclass(frozen=True)
class Channel:
    """A row of `/clients`: a connection and whether it is still connected."""

    conn: Conn
    connected: bool


class Channels:
    def __init__(self) -> None:
        self.live: dict[str, Conn] = {}
        self.latest: dict[str, Conn] = {}

    def opened(self, conn: Conn) -> None:
        self.live[conn.clientid] = conn
        self.latest[conn.clientid] = conn

    def closed(self, conn: Conn) -> None:
        """The connection ended; a clean session ends with it, a persistent one stays listed."""
        if self.live.get(conn.clientid) is conn:
            del self.live[conn.clientid]
        if conn.info.clean_start and self.latest.get(conn.clientid) is conn:
            del self.latest[conn.clientid]

    def listing(self, sessions: dict[str, tuple[Session, Any]]) -> list[Channel]:
        """Live connections, then offline persistent sessions still held by the broker; forgets
        connections whose session is gone."""
        rows: list[Channel] = []
        for clientid, conn in list(self.latest.items()):
            if self.live.get(clientid) is conn:
                rows.append(Channel(conn, True))
            elif not conn.info.clean_start and sessions.get(clientid, (None,))[0] is conn.session:
                rows.append(Channel(conn, False))
            else:
                del self.latest[clientid]
        return rows
