"""The ingest's device scripts on a real Redis Cluster (issue 15): presence, device.lua, uplink.lua (report,
heartbeat with wake, peripherals, a routed message with its forwarding) and FORWARD alone, for many devices over
every shard, through redis-py's cluster client; every call is one slot (no CROSSSLOT, no non-local key). Also
retention and reconciliation (every shard), and credentials (one slot per sn, a list over the shards).

Skipped unless TEST_REDIS_CLUSTER_PORTS is set (e.g. "7121 7122 7123", a cluster started by
scripts/ensure-redis-cluster). Self-contained: a unique key prefix per test, removed from every primary after.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis
import redis.asyncio.cluster as aiocluster
import redis.exceptions

from adapter.broker.credentials import CredentialStore, VerifyLimiter
from adapter.devices import reconcile, retention
from adapter.devices.calls import device_call, peripheral_args, uplink_call, wake_args
from adapter.devices.presence_calls import presence_call
from adapter.protocol.events import Connected, Disconnected, MessagePublished
from adapter.protocol.uplink import Peripheral
from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.scripts import ScriptCall
from adapter.targets.forwarding import forward_call, forward_of
from adapter.targets.route_table import RouteInfo

PORTS = [int(p) for p in os.environ.get("TEST_REDIS_CLUSTER_PORTS", "").split()]
pytestmark = pytest.mark.skipif(not PORTS, reason="TEST_REDIS_CLUSTER_PORTS is not set (no cluster to test on)")
PARTITIONS = 48
DEVICES = 150


@pytest.fixture
def keys(cluster_prefix: str) -> Keys:
    return Keys(cluster_prefix, PARTITIONS)


def sns_over_every_shard(keys: Keys) -> list[str]:
    """DEVICES sns, and then more until every shard has at least two."""
    out, n = [], 0
    while len(out) < DEVICES or min(sum(1 for sn in out if keys.shard(sn) == p) for p in keys.shards()) < 2:
        out.append(f"GW{n:05d}")
        n += 1
    return out


async def call(rc: Any, built: ScriptCall) -> Any:
    return await scripts.call(rc, built)


def message(sn: str, n: int, topic: str, payload: str = "{}") -> MessagePublished:
    return MessagePublished(id=f"{n:08d}{sn}".ljust(32, "0"), clientid=sn, topic=topic, payload=payload,
                            encoding="plain", qos=1, retain=False, received_at=1_717_000_000_000 + n, username=sn)


def entries(r: redis.RedisCluster, keys: Keys, sn: str) -> list[dict[bytes, bytes]]:
    stream = keys.delivery_stream(keys.stream_partition(sn))
    return [f for _, f in r.xrange(stream) if f[b"k"] == sn.encode()]


async def test_the_ingest_scripts_run_on_a_cluster_one_slot_per_call(keys: Keys) -> None:
    sns = sns_over_every_shard(keys)
    routes = [RouteInfo(5, "#")]

    rc = aiocluster.RedisCluster(host="127.0.0.1", port=PORTS[0])
    try:
        for p in keys.shards():  # the enabled callbacks' replicas, as the targets store writes them
            await rc.sadd(keys.callbacks_enabled_in("device", p), "1")
            await rc.sadd(keys.callbacks_enabled_in("peripheral", p), "2")
        for n, sn in enumerate(sns):
            p = keys.shard(sn)
            # a waiting command, for the heartbeat to wake
            await rc.zadd(keys.commands_active(sn), {"C1": 1})
            await rc.hset(keys.command_prefix(p) + "C1", mapping={"state": "0", "expireAt": 2**50})
            assert await call(rc, device_call(keys, Connected(sn, 1000 + n))) is not None
            assert await call(rc, uplink_call(keys, "mark", sn, 1_717_000_000_000,
                                                      wake_args(keys, sn))) == 1
            await call(rc, uplink_call(keys, "report", sn, 1_717_000_001_000, ["sys", '{"a":1}']))
            await call(rc, uplink_call(keys, "heartbeat", sn, 1_717_000_002_000,
                                               [5, 15, *wake_args(keys, sn)]))
            items = [Peripheral("N1", "OTHER-GW", True, "{}"), Peripheral("N2", sn, False, "{}")]
            assert await call(rc, uplink_call(keys, "peripherals", sn, 1_717_000_003_000,
                                                      peripheral_args(keys, sn, items, 1000, 86_400))) == 1
            msg = message(sn, n, f"app/{sn}/up")
            fwd = forward_of(msg, routes, keys)
            assert fwd is not None
            for _ in range(2):  # a redelivery forwards nothing again
                await call(rc, uplink_call(keys, "active", sn, msg.received_at, (), fwd))
            alone = forward_of(message(sn, n + 10_000, f"app/{sn}/bad"), routes, keys)
            assert alone is not None
            assert await call(rc, forward_call(alone)) == 1
            down = Disconnected(sn, 5000 + n, "tcp_closed", connected_at=1000 + n)
            assert await call(rc, device_call(keys, down)) is not None
            # presence.lua alone (how its tests hold it against presence.py)
            assert await call(rc, presence_call(keys.client(sn), down)) is None
    finally:
        await rc.aclose()
    r = redis.RedisCluster(host="127.0.0.1", port=PORTS[0])
    try:
        devices = {m.decode() for p in keys.shards() for m in r.zrange(keys.devices(p), 0, -1)}
        offline = {m.decode() for p in keys.shards() for m in r.zrange(keys.devices_offline(p), 0, -1)}
        online = sum(r.zcard(keys.devices_online(p)) for p in keys.shards())
        assert devices == offline == set(sns) and online == 0
        for sn in sns:
            p = keys.shard(sn)
            assert r.zrange(keys.devices(p), f"[{sn}", f"[{sn}", bylex=True) == [sn.encode()]
            record = r.hgetall(keys.client(sn))
            assert record[b"online"] == b"0" and record[b"device"] == b"1" and record[b"sys"] == b'{"a":1}'
            assert (record[b"bootTime"], record[b"dur"]) == (b"5", b"15")
            assert r.zscore(keys.commands_due(p), "C1") is not None  # woken by the mark and the heartbeat
            assert r.zscore(keys.peripherals_of_gw("OTHER-GW", p), f"{sn}/N1") == 0  # in the reporter's shard
            assert r.hget(keys.peripheral(sn, "N1"), "online") == b"0"  # its gateway went offline
            assert r.zcard(keys.peripherals_seen(sn)) == 2
            got = entries(r, keys, sn)
            targets = sorted(f[b"t"].decode() for f in got)
            # device online + offline, peripheral N1 online (report) + offline (gateway offline), two routed
            assert targets == ["callback:1", "callback:1", "callback:2", "callback:2", "route:5", "route:5"], sn
            assert r.exists(keys.seen(f"msg:{message(sn, sns.index(sn), '').id}", sn)) == 1
        peripherals = sum(r.zcard(keys.peripherals(p)) for p in keys.shards())
        assert peripherals == 2 * len(sns)
        # one gateway's peripherals are the union of its sets over every shard
        other = {m.decode() for p in keys.shards() for m in r.zrange(keys.peripherals_of_gw("OTHER-GW", p), 0, -1)}
        assert other == {f"{sn}/N1" for sn in sns}
    finally:
        r.close()


def test_a_call_over_two_slots_is_refused(keys: Keys) -> None:
    """What the one-slot rule guards against: redis-py refuses a script call whose KEYS span slots, and the
    cluster refuses a script that reaches a key of another slot."""
    a, b = next((x, y) for x in ("A1", "A2", "A3") for y in ("B1", "B2", "B3") if keys.shard(x) != keys.shard(y))
    r = redis.RedisCluster(host="127.0.0.1", port=PORTS[0])
    try:
        with pytest.raises(redis.exceptions.RedisClusterException):
            r.eval("return 1", 2, keys.client(a), keys.client(b))
        with pytest.raises(redis.exceptions.ResponseError, match=r"non local key|CROSSSLOT|not in the slot"):
            r.eval("return redis.call('SET', ARGV[1], '1')", 1, keys.client(a), keys.client(b))
    finally:
        r.close()


async def test_retention_and_reconciliation_walk_every_shard(keys: Keys) -> None:
    """retention.py walks each index shard and SCANs each primary; a reconciliation correction runs under
    WATCH/MULTI of the client hash (one slot with the rest of its call)."""
    sns = sns_over_every_shard(keys)

    rc = aiocluster.RedisCluster(host="127.0.0.1", port=PORTS[0], decode_responses=True)
    try:
        for sn in sns:
            await call(rc, device_call(keys, Connected(sn, 1000)))
            await call(rc, uplink_call(keys, "report", sn, 2000, ["sys", "{}"]))
            await call(rc, device_call(keys, Disconnected(sn, 3000, "normal", connected_at=1000)))
        await call(rc, device_call(keys, Connected("NEVER-A-DEVICE", 1000)))
        await call(rc, device_call(keys, Disconnected("NEVER-A-DEVICE", 3000, "normal",
                                                                       connected_at=1000)))
        back = sns[0]
        state = await rc.hmget(keys.client(back), reconcile.STATE)
        applied = await reconcile.apply_guarded(rc, keys, Connected(back, 9000), state)
        applied, online = applied, list(await reconcile.online_snapshot(rc, keys))
    finally:
        await rc.aclose()
    assert applied is True and online == [sns[0]]
    r = redis.RedisCluster(host="127.0.0.1", port=PORTS[0])
    try:
        out = retention.run(r, keys, 0, 20)
        assert (out.devices, out.clients) == (len(sns) - 1, 1)
        assert [m for p in keys.shards() for m in r.zrange(keys.devices(p), 0, -1)] == [sns[0].encode()]
        assert r.exists(*[keys.client(sn) for sn in sns[1:]]) == 0
    finally:
        r.close()


async def test_credentials_on_a_cluster(keys: Keys) -> None:
    """A credential, its shard of the creds index and its authn mark are one slot (MULTI), and the list
    merges the shards newest first."""
    sns = [f"CRED{n}" for n in range(30)]

    rc = aiocluster.RedisCluster(host="127.0.0.1", port=PORTS[0], decode_responses=True)
    store = CredentialStore(rc, keys)
    try:
        secrets = {}
        for sn in sns:
            _, secrets[sn] = await store.create(sn)
        total, page = await store.page(1, 50)
        assert total == len(sns) and {c.sn for c in page} == set(sns)
        assert [c.created for c in page] == sorted((c.created for c in page), reverse=True)
        total, second = await store.page(2, 20)
        assert total == len(sns) and len(second) == 10
        limiter = VerifyLimiter(2, 10)
        assert await store.verify(sns[0], secrets[sns[0]], cache_ttl=60, limiter=limiter) is True
        assert await rc.exists(keys.authn_cache(sns[0])) == 1
        assert await store.revoke(sns[0]) == 1
        assert await store.get(sns[0]) is None and await rc.exists(keys.authn_cache(sns[0])) == 0
        assert (await store.get(sns[1])) is not None
    finally:
        await rc.aclose()
