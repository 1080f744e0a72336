"""A message's route deliveries ride on its own uplink script call (forward.lua inside uplink.lua): on the real
Redis, the device effects are exactly those without routes, every message is forwarded once to each route
it matches in the routes' order, and one whose uplink is rejected is still forwarded (routes issue, item 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from adapter.commands import rules as commands
from adapter.delivery.model import Delivery
from adapter.devices import calls as device_calls
from adapter.ingest.plan import Ingest
from adapter.protocol.events import MessagePublished, parse_event
from adapter.store.connections import batcher_for
from adapter.store.keys import Keys
from adapter.store.metrics import MetricsBuffer
from adapter.targets.forwarding import FORWARD, body
from adapter.targets.route_table import RouteTable
from tests.conftest import async_store_client, flush_store, primaries, store_client, zall
from tests.support.emqx import connected, disconnected, published, subscribed

ROUTES = {"3": "#", "5": "dma/report/+/+", "9": "other/topic"}


def events() -> list[dict[str, Any]]:
    """Every kind of message the uplink script handles, one rejected, and a client that is no device."""
    gw = "GW1"
    peripherals = {"sn": gw, "time": 1, "d": [{"nId": "P1", "gwId": "G", "online": True, "msg": {"t": 1}},
                                               {"nId": "P2", "gwId": "G", "online": False, "msg": {}}]}
    reports = [
        ("dma/report/GW1/heartbeat", {"sn": gw, "time": 5, "bootTime": 77, "dur": 15}),
        ("dma/report/GW1/procs", {"sn": gw, "time": 6, "d": [{"n": "monitor", "mem": 1088}]}),
        ("dma/report/GW1/sys", {"sn": gw, "time": 7, "d": {"free": 1}}),
        ("dma/report/GW1/versions", {"sn": gw, "time": 8, "d": [{"n": "monitor", "v": "1.0"}]}),
        ("dma/report/GW1/peripherals", peripherals),
        ("dma/report/GW1/sys", "not json"),  # rejected by the device layer, still routed
        ("dma/resp/cmd", {"id": "1", "sn": gw, "result": "ok"}),
        ("other/topic", {"any": "thing"}),
        ("dma/report/GW1/unknown-kind", {"sn": gw}),
    ]
    out: list[dict[str, Any]] = [connected(gw, 1000), subscribed(gw)]
    for n, (topic, payload) in enumerate(reports):
        out.append(published(gw, topic, payload, at=2_000_000 + n, msg_id=f"{n:032X}"))
    # a client that never becomes a device: its messages only mark activity (the uplink's early return)
    out += [connected("TOOL", 1000), published("TOOL", "other/topic", {"x": 1}, at=2_000_100, msg_id="F" * 32)]
    out.append(disconnected(gw, 1000, 3_000_000, reason="keepalive_timeout"))
    return out


@pytest.fixture
def raw(redis_db: redis.Redis) -> Iterator[redis.Redis]:
    client = store_client()
    yield client
    client.close()


async def apply_all(keys: Keys, bodies: list[dict[str, Any]], routes: dict[str, str], times: int = 1) -> None:
    client = async_store_client()
    try:
        batcher = batcher_for(client, [*device_calls.SCRIPTS, FORWARD, *commands.SCRIPTS])
        await batcher.load_scripts()
        table = RouteTable(keys)
        table.load(routes, 1)
        ingest = Ingest(batcher, keys, MetricsBuffer(), table)
        for _ in range(times):  # EMQX redelivers
            for b in bodies:
                await ingest.apply(parse_event(b))
    finally:
        await client.aclose()


def stored_keys(r: redis.Redis, keys: Keys, **scan: Any) -> list[bytes]:
    """The test's keys, from every primary on the cluster."""
    return sorted(k for node in primaries(r) for k in node.scan_iter(match=f"{keys.prefix}:*", **scan))


def state(r: redis.Redis, keys: Keys) -> dict[bytes, Any]:
    """Everything stored except the delivery streams and the messages' seen keys (what forwarding adds)."""
    out: dict[bytes, Any] = {}
    for key in stored_keys(r, keys):
        kind = r.type(key)
        if kind == b"stream" or b":seen:msg:" in key:
            continue
        if kind == b"hash":
            out[key] = r.hgetall(key)
        elif kind == b"zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = r.smembers(key)
        elif kind == b"string":
            out[key] = r.get(key)
        else:
            out[key] = kind
    return out


def deliveries(r: redis.Redis, keys: Keys) -> list[Delivery]:
    return [Delivery.from_fields(f) for k in stored_keys(r, keys, _type="stream") for _, f in r.xrange(k)]


async def test_routed_messages_change_the_device_exactly_as_unrouted_ones(raw: redis.Redis, keys: Keys) -> None:
    bodies = events()
    await apply_all(keys, bodies, {})
    without = state(raw, keys)
    assert json.loads(raw.hget(keys.client("GW1"), "procs") or b"{}")["d"] == [{"n": "monitor", "mem": 1088}]
    assert zall(raw, keys, keys.peripherals) == [b"GW1/P1", b"GW1/P2"]
    assert deliveries(raw, keys) == []
    flush_store(raw, keys.prefix)
    await apply_all(keys, bodies, ROUTES, times=2)
    assert state(raw, keys) == without


async def test_each_message_is_forwarded_once_per_matching_route_in_route_order(raw: redis.Redis, keys: Keys) -> None:
    bodies = events()
    await apply_all(keys, bodies, ROUTES, times=2)
    got = deliveries(raw, keys)
    msgs = [ev for ev in map(parse_event, bodies) if isinstance(ev, MessagePublished)]
    want = []
    for m in msgs:
        for rid, topic in ROUTES.items():
            if topic == "#" or (topic == "dma/report/+/+" and m.topic.count("/") == 3
                                and m.topic.startswith("dma/report/")) or topic == m.topic:
                want.append((f"route:{rid}", m.clientid, f"m:{m.id}:route:{rid}", body(m, int(rid))))
    assert sorted((d.target, d.key, d.id, d.body) for d in got) == sorted(want)
    assert len(got) == len(want) == 10 + 7 + 2  # '#': every message; '+/+': GW1's 7 reports; other/topic: 2
    # one client's messages stay in order per route, on the client's partition
    for clientid in ("GW1", "TOOL"):
        stream = keys.delivery_stream(keys.stream_partition(clientid)).encode()
        mine = [Delivery.from_fields(f) for _, f in raw.xrange(stream) if f[b"k"] == clientid.encode()]
        for rid in ROUTES:
            ids = [d.id for d in mine if d.target == f"route:{rid}"]
            assert ids == [w[2] for w in want if w[0] == f"route:{rid}" and w[1] == clientid]
