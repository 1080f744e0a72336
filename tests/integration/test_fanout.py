"""Every real presence transition becomes one delivery per enabled callback of its type, written in the same
atomic step as the state change (delivery issue, item 3)."""

from __future__ import annotations

import json

import httpx
import redis

from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import enable_callbacks
from tests.support.emqx import connected, disconnected, post, published, subscribed


def entries(keys: Keys, r: redis.Redis, settings: Settings) -> list[dict]:
    out = []
    for p in range(keys.stream_partitions):
        for _, fields in r.xrange(keys.delivery_stream(p)):
            out.append({**fields, "p": p})
    return out


def test_device_transitions_fan_out_to_enabled_callbacks(ingest: httpx.Client, redis_db: redis.Redis,
                                                         settings: Settings, keys: Keys) -> None:
    enable_callbacks(redis_db, keys, "device", "1", "2")
    enable_callbacks(redis_db, keys, "peripheral", "9")
    post(ingest, connected("FAN1", 1_700_000_000_000))
    assert entries(keys, redis_db, settings) == []  # not a device yet: no callback
    post(ingest, subscribed("FAN1"))  # becomes a device while online: one online transition
    post(ingest, subscribed("FAN1"))  # a repeated subscribe is no transition
    post(ingest, disconnected("FAN1", 1_700_000_000_000, 1_700_000_060_000, reason="keepalive_timeout"))
    post(ingest, disconnected("FAN1", 1_700_000_000_000, 1_700_000_060_000, reason="keepalive_timeout"))
    got = entries(keys, redis_db, settings)
    assert len(got) == 4  # two transitions × two device callbacks
    assert {e["t"] for e in got} == {"callback:1", "callback:2"}
    assert {e["p"] for e in got} == {keys.stream_partition("FAN1")}
    bodies = [json.loads(e["b"]) for e in got if e["t"] == "callback:1"]
    assert [b["online"] for b in bodies] == [True, False]
    assert [b["version"] for b in bodies] == [2, 3]
    off = bodies[1]
    assert off == {"type": "device", "sn": "FAN1", "online": False, "time": 1_700_000_060,
                   "onlineTime": 1_700_000_000, "offlineTime": 1_700_000_060, "reason": "keepalive_timeout",
                   "version": 3, "eventId": "d:FAN1:3"}
    assert {e["id"] for e in got} == {"d:FAN1:2:callback:1", "d:FAN1:2:callback:2", "d:FAN1:3:callback:1",
                                      "d:FAN1:3:callback:2"}
    assert all(e["n"] == "0" and e["k"] == "FAN1" for e in got)


def test_peripheral_transitions_fan_out(ingest: httpx.Client, redis_db: redis.Redis, settings: Settings,
                                        keys: Keys) -> None:
    enable_callbacks(redis_db, keys, "peripheral", "7")
    post(ingest, connected("GWF", 1000_000))
    report = {"sn": "GWF", "time": 1, "d": [{"nId": "N1", "gwId": "G1", "online": True, "msg": {}}]}
    post(ingest, published("GWF", "dma/report/GWF/peripherals", report, at=2_000_000))
    post(ingest, disconnected("GWF", 1000_000, 3_000_000))
    bodies = [json.loads(e["b"]) for e in entries(keys, redis_db, settings)]
    assert [(b["type"], b["nId"], b["gwId"], b["online"], b["reason"]) for b in bodies] == [
        ("peripheral", "N1", "G1", True, "report"), ("peripheral", "N1", "G1", False, "gateway_offline")]
    assert [b["version"] for b in bodies] == [1, 2]


def test_no_enabled_callback_writes_nothing(ingest: httpx.Client, redis_db: redis.Redis, settings: Settings,
                                            keys: Keys) -> None:
    post(ingest, connected("FAN2", 1000))
    post(ingest, subscribed("FAN2"))
    post(ingest, disconnected("FAN2", 1000, 2000))
    assert entries(keys, redis_db, settings) == []
