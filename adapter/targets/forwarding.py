"""What a message route forwards (docs/routes.md), as pure functions: the body, and the delivery stream
entries that carry one message to each route it matched.

The body of message `m` for route `r`:
    {"topic", "payload", "payload_encoding": "plain"|"base64", "clientid", "username", "qos", "retain",
     "timestamp" (ms, when the broker received it), "id" (EMQX's message id), "routeId"}
`payload` is the string EMQX sent, unchanged: text as received, or base64 when the rule encoded it.

Once per message (EMQX redelivers events), one stream entry per matched route: `t` "route:<id>", `k` the
publishing clientid, `id`
"m:<message id>:route:<route id>" (stable across attempts and redeliveries: the receiver's idempotency key
and the `webhook-id`), `b` the body, `n` 0. The key picks the partition, and the engine sends the entries
of one target and key one after another, so each route gets one client's messages in their order.

The entries are written by forward.lua: inside the message's uplink script call (devices/calls.py) when it
has one, so forwarding costs no script call of its own; alone (FORWARD, `forward_call`) when the uplink was
rejected. The seen key and the stream are both in the publisher's slot on a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import orjson

from adapter.protocol.events import REST_API_CLIENT, SEEN_TTL, MessagePublished
from adapter.store.keys import Keys
from adapter.store.resp import Arg
from adapter.store.scripts import Script, ScriptCall
from adapter.targets.route_table import RouteInfo


def message_fields(msg: MessagePublished) -> dict[str, object]:
    """The body without `routeId`: what every route of one message gets alike."""
    return {"topic": msg.topic, "payload": msg.payload, "payload_encoding": msg.encoding,
            "clientid": msg.clientid, "username": msg.username, "qos": msg.qos, "retain": msg.retain,
            "timestamp": msg.received_at, "id": msg.id}


def body(msg: MessagePublished, route_id: int) -> bytes:
    """The forwarded body (JSON) of `msg` for one route."""
    return orjson.dumps({**message_fields(msg), "routeId": route_id})


FORWARD = Script.load("targets/forwarded.lua")


class Forward(NamedTuple):
    """What one message's routes write (forward.lua): the seen key that makes it once per message id, the
    stream of the publishing client's partition, the ordering key (the clientid), and `argv`: the message id,
    the body up to the route id, and the matched route ids in order (each body is the head, the id and `}`)."""

    seen: bytes
    stream: str
    key: str
    argv: tuple[Arg, ...]

    @property
    def routes(self) -> int:
        return len(self.argv) - 2


@lru_cache(maxsize=100_000)
def stream_of(keys: Keys, clientid: str) -> str:
    """The delivery stream of a publishing client (an ordering key): its partition's, in its slot."""
    return keys.delivery_stream(keys.stream_partition(clientid))


def forward_of(msg: MessagePublished, routes: Sequence[RouteInfo], keys: Keys) -> Forward | None:
    """The forwarding of `msg` to the routes it matched; None when there is nothing to forward (no route, or
    a message the service published itself)."""
    if not routes or msg.clientid == REST_API_CLIENT:
        return None
    head = orjson.dumps(message_fields(msg))[:-1] + b',"routeId":'
    message_id = msg.id.encode()  # bytes: resp.py keeps no copy of what is unique to one message
    return Forward(keys.seen("msg:" + msg.id, msg.clientid).encode(), stream_of(keys, msg.clientid),
                   msg.clientid, (message_id, head, *[r.id for r in routes]))


def forward_call(fwd: Forward) -> ScriptCall:
    """FORWARD, for a message with no script call of its own to carry it (a rejected uplink); otherwise the uplink
    call carries the Forward (devices/calls.py `uplink_call`)."""
    return FORWARD.call(seen=fwd.seen, stream=fwd.stream, seen_ttl=SEEN_TTL, key=fwd.key, forward=fwd.argv)
