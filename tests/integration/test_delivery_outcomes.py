"""outcome.lua with many outcomes to a call (writer.py merges a partition's): what it gathers and writes once per key
at the end (attempt records, counters, XDEL) and what it reads once per call (the breaker's fields once cleared,
whether a counts hash exists) leave Redis exactly as the same outcomes written one call each, in order: successes,
a retry, a dead letter, a dropped and a deferred delivery, a held chain released, a counts hash that does not exist,
the same entry twice and an entry no longer pending. Both layouts (the keys fixture)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis

from adapter.delivery import model
from adapter.delivery.model import Delivery, Limits, Outcome, OutcomeName, outcome_call, outcomes
from adapter.store.keys import Keys
from adapter.store.scripts import ScriptCall

GROUP = "pumps"
NOW = 1_700_000_000_000
CB, ROUTE = "callback:1", "route:2"


def _scenario(r: redis.Redis, keys: Keys) -> list[ScriptCall]:
    """The store before, and the outcomes to write (partition 0)."""
    stream = keys.delivery_stream(0)
    r.hset(keys.delivery_counts(CB, 0), mapping={"succCount": 0, "failedCount": 0})  # the route's: none
    r.hset(keys.delivery_state(CB, 0), mapping={"failures": 3})  # cleared by the first success
    sn = [name for name in (f"SN{i}" for i in range(10_000)) if keys.stream_partition(name) == 0][:8]
    entries = [(CB, sn[0]), (CB, sn[0]), (CB, sn[1]), (CB, sn[2]), (ROUTE, sn[3]), (ROUTE, sn[3]), (CB, sn[4]),
               (ROUTE, sn[5]), (CB, sn[6]), (CB, sn[7])]
    ds = []
    for n, (target, key) in enumerate(entries, 1):
        d = Delivery(target, key, f"d{n}", b'{"n":%d}' % n, 0)
        r.xadd(stream, {"t": target, "k": key, "id": d.id, "b": d.body, "n": 0}, id=f"1-{n}")
        ds.append(d)
    r.xgroup_create(stream, GROUP, id="0")
    r.xreadgroup(GROUP, "c", {stream: ">"}, count=8)  # 1-9 and 1-10 stay unread: not pending
    # the chain of d4's device: d4 was the head of a hold, one more waits behind it
    held = Delivery(CB, sn[2], "d4b", b'{"n":"4b"}', 0)
    r.rpush(keys.delivery_hold(CB, sn[2]), "head:d4", held.to_json(NOW - 10))
    r.sadd(keys.delivery_holds(0), keys.delivery_hold(CB, sn[2]))
    r.zadd(keys.delivery_held(CB, 0), {keys.delivery_hold(CB, sn[2]): NOW - 10})
    r.hset(keys.delivery_state(CB, 0), "held", 1)

    def call(i: int, name: OutcomeName, **more: Any) -> ScriptCall:
        d = ds[i - 1]
        return outcome_call(keys, 0, GROUP, f"1-{i}", d, Outcome(name, status=200, duration_ms=1.0, **more),
                            "device" if d.target == CB else None, Limits(), NOW)

    s = OutcomeName.SUCCESS
    return [call(1, s), call(2, s), call(3, OutcomeName.RETRY, due_ms=NOW + 5000), call(4, s),
            call(5, OutcomeName.DEAD, error="gone"), call(6, s), call(7, OutcomeName.DROPPED),
            call(8, OutcomeName.DEFERRED, due_ms=NOW + 9000), call(1, s), call(9, s), call(2, OutcomeName.RETRY)]


def _dump(r: redis.Redis, keys: Keys) -> dict[str, Any]:
    """Every key of the prefix by its name without the prefix; a stream as its entries' fields (the ids of released
    entries are Redis's) and its pending count."""
    out: dict[str, Any] = {}
    for key in r.keys(keys.prefix + "*"):
        kind, name = r.type(key), key.removeprefix(keys.prefix)
        if kind == "string":
            out[name] = r.get(key)
        elif kind == "hash":
            out[name] = r.hgetall(key)
        elif kind == "list":
            out[name] = [v.replace(keys.prefix, "<p>") for v in r.lrange(key, 0, -1)]
        elif kind == "set":
            out[name] = sorted(v.removeprefix(keys.prefix) for v in r.smembers(key))
        elif kind == "zset":
            out[name] = [(m.removeprefix(keys.prefix), s) for m, s in r.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            out[name] = ([fields for _, fields in r.xrange(key)], r.xpending(key, GROUP)["pending"])
    return out


def _run(r: redis.Redis, call: ScriptCall) -> list[Any]:
    return r.eval(call.script.script, len(call.keys), *call.keys, *call.args)  # type: ignore[no-any-return]


def test_outcomes_merged_in_one_call_write_what_they_write_one_by_one(redis_db: redis.Redis, keys: Keys,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "time", SimpleNamespace(time=lambda: NOW / 1000))  # the records' time: the same
    one_by_one = Keys(keys.prefix + "a", keys.cluster_partitions, keys.stream_partitions)
    merged = Keys(keys.prefix + "b", keys.cluster_partitions, keys.stream_partitions)
    marks_one = [mark for call in _scenario(redis_db, one_by_one) for mark in _run(redis_db, call)]
    marks_merged = _run(redis_db, outcomes(_scenario(redis_db, merged)))
    assert marks_merged == marks_one == ["", "", "head:d3", "", "", "", "", "head:d8", "", "", ""]
    before, after = _dump(redis_db, one_by_one), _dump(redis_db, merged)
    assert after == before
    # what the scenario was for: the writes to compare are there
    k = one_by_one

    def at(key: str) -> Any:
        return before.get(key.removeprefix(k.prefix))

    records = [a.split('"outcome":"')[1].split('"')[0] for a in at(k.attempts(CB, 0))]
    assert records == ["dropped", "success", "retry", "success", "success"]
    if k.cluster:  # the counts are the state hash's (outcome.lua, KEYS 2)
        assert at(k.delivery_state(CB, 0)) == {"held": "0", "succCount": "3", "failedCount": "0"}
        assert at(k.delivery_state(ROUTE, 0)) == {"failedCount": "1", "succCount": "1"}
    else:
        assert at(k.delivery_counts(CB, 0)) == {"succCount": "3", "failedCount": "0"}
        assert at(k.delivery_counts(ROUTE, 0)) is None and at(k.delivery_state(CB, 0)) == {"held": "0"}
    assert at(k.dead(ROUTE, 0))
    fields, pending = at(k.delivery_stream(0))
    assert pending == 0 and [f["id"] for f in fields] == ["d9", "d10", "d4b"]
