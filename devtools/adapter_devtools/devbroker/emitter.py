"""The rule engine stand-in: which broker happenings become events, and where they go.

Client and session events always fire; `message.publish` fires for topics matching the configured
filters (the rule's FROM), except messages the REST API published (`clientid: "http_api"`, which our
EMQX rules exclude). Events are keyed by their `clientid` so each client's events stay in order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from adapter.protocol.topics import matches
from adapter_devtools.devbroker import events
from adapter_devtools.devbroker.delivery import EventPoster
from adapter_devtools.devbroker.model import ConnInfo, Origin


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wants_publish(origin: Origin, topic_filters: Sequence[str]) -> bool:
    return not origin.from_api and any(matches(f, origin.topic) for f in topic_filters)


class Emitter:
    def __init__(self, node: str, poster: EventPoster, topic_filters: Sequence[str]) -> None:
        self.node = node
        self.poster = poster
        self.topic_filters = tuple(topic_filters)

    def _stamp(self) -> events.Stamp:
        return events.Stamp(self.node, now_ms())

    def connected(self, conn: ConnInfo) -> None:
        self.poster.submit(conn.clientid, events.connected(conn, self._stamp()))

    def disconnected(self, conn: ConnInfo, reason: str, at: int) -> None:
        self.poster.submit(conn.clientid, events.disconnected(conn, reason, at, self._stamp()))

    def subscribed(self, conn: ConnInfo, topic: str, qos: int) -> None:
        self.poster.submit(conn.clientid, events.subscribed(conn, topic, qos, self._stamp()))

    def unsubscribed(self, conn: ConnInfo, topic: str, qos: int) -> None:
        self.poster.submit(conn.clientid, events.unsubscribed(conn, topic, qos, self._stamp()))

    def published(self, origin: Origin) -> None:
        if wants_publish(origin, self.topic_filters):
            self.poster.submit(origin.clientid, events.publish(origin, self._stamp()))

    def acked(self, origin: Origin, receiver: ConnInfo, qos: int, flags: dict[str, bool]) -> None:
        self.poster.submit(receiver.clientid, events.acked(origin, receiver, qos, flags, self._stamp()))
