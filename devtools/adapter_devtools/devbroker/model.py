"""The facts the dev broker reports: one connection (`ConnInfo`) and one published message (`Origin`).

Both are plain frozen values, so the event bodies (`events.py`) and the REST views (`views.py`) are
pure functions of them. A message's `Origin` travels with its payload through amqtt's routing
(offline queue, retained store, per-subscriber publish) as a `TaggedPayload`, a `bytes` subclass
that amqtt passes along untouched; that is how `message.acked` knows the id, sender and receive time
of the message a subscriber acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

API_CLIENTID = "http_api"
"""The `from` EMQX gives messages published through its REST API."""


@dataclass(frozen=True)
class ConnInfo:
    """One accepted MQTT connection, as EMQX's conninfo/clientinfo describe it."""

    clientid: str
    username: str | None
    peerhost: str
    peerport: int
    sockhost: str
    sockport: int
    keepalive: int
    clean_start: bool
    connected_at: int
    """ms since the epoch."""
    expiry_interval: int
    """Session expiry, seconds (0 for a clean session)."""
    proto_ver: int = 4
    proto_name: str = "MQTT"
    receive_maximum: int = 32

    @property
    def peername(self) -> str:
        return f"{self.peerhost}:{self.peerport}"

    @property
    def sockname(self) -> str:
        return f"{self.sockhost}:{self.sockport}"


@dataclass(frozen=True)
class Origin:
    """A message as the broker received it (from a client, a will, or the REST API)."""

    id: str
    clientid: str
    username: str | None
    peerhost: str | None
    peername: str | None
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    received_at: int
    """ms since the epoch (EMQX `publish_received_at`)."""
    client_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def from_api(self) -> bool:
        return self.clientid == API_CLIENTID


class TaggedPayload(bytes):
    """Payload bytes that remember the message they belong to."""

    origin: Origin


def tag(data: bytes | bytearray, origin: Origin) -> TaggedPayload:
    tagged = TaggedPayload(data)
    tagged.origin = origin
    return tagged


def origin_of(data: object) -> Origin | None:
    return data.origin if isinstance(data, TaggedPayload) else None
