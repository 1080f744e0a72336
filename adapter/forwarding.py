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
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from adapter.delivery import partition_of
from adapter.events import MessagePublished
from adapter.keys import Keys
from adapter.presence_store import LuaScript
from adapter.resp import Arg, pack
from adapter.route_table import RouteInfo

REST_API_CLIENT = "http_api"  # messages the service published itself (EMQX's REST API): never routed


def delivery_id(message_id: str, route_id: int) -> str:
    return f"m:{message_id}:route:{route_id}"


def message_fields(msg: MessagePublished) -> dict[str, object]:
    """The body without `routeId`: what every route of one message gets alike."""
    return {"topic": msg.topic, "payload": msg.payload, "payload_encoding": msg.encoding,
            "clientid": msg.clientid, "username": msg.username, "qos": msg.qos, "retain": msg.retain,
            "timestamp": msg.received_at, "id": msg.id}


def body(msg: MessagePublished, route_id: int) -> bytes:
    """The forwarded body (JSON) of `msg` for one route."""
    return orjson.dumps({**message_fields(msg), "routeId": route_id})


SEEN_TTL = 600  # s: longer than EMQX retries an event (request_ttl, 45 s by default)

# once per message (a redelivered publish event forwards nothing again): one entry per matched route
FORWARD = LuaScript("""
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
for i = 3, #ARGV, 3 do
  redis.call('XADD', KEYS[2], '*', 't', ARGV[i], 'k', ARGV[2], 'id', ARGV[i + 1], 'b', ARGV[i + 2], 'n', '0')
end
return (#ARGV - 2) / 3
""")


def forward_command(msg: MessagePublished, routes: Sequence[RouteInfo], keys: Keys,
                    partitions: int) -> bytes | None:
    """One packed script call writing an entry per route, in the routes' order, to the partition of the
    publishing client, unless this message was forwarded already; None when there is nothing to forward."""
    if not routes or msg.clientid == REST_API_CLIENT:
        return None
    stream = keys.delivery_stream(partition_of(msg.clientid, partitions))
    head = orjson.dumps(message_fields(msg))[:-1] + b',"routeId":'
    args: list[Arg] = [SEEN_TTL, msg.clientid]
    for r in routes:
        args += [f"route:{r.id}", delivery_id(msg.id, r.id), b"%s%d}" % (head, r.id)]
    return pack("EVALSHA", FORWARD.sha, 2, keys.seen(f"msg:{msg.id}"), stream, *args)
