"""Deliveries (event × target) and what each attempt's outcome writes (docs/design.md §6).

A delivery is a stream entry: `t` target ("callback:1", "route:4"), `k` ordering key (the device), `id`
delivery id (stable across attempts: the receivers' idempotency key and the `webhook-id`), `b` the JSON
body, `n` attempts made so far. Entries of one key go to one partition, so one pump sees them in order.

First attempt and retry share this one path; the attempt number is data. A retry parks the delivery in
a sorted set by due time, and later deliveries of the same target and key wait behind it in a hold list
(order per device), released when it ends (delivered or dead-lettered), a batch at a time: the released
entries carry `r` 1, the last of a batch 2 when more wait, and that one's outcome releases the next batch.
A delivery whose target's breaker is open is `deferred`: parked like a retry, without counting an attempt.
Held deliveries and dead letters are capped per target (count and age; the oldest go, counted); on Redis Cluster
per (target, partition), each at cap / partitions (`Limits.per_partition`, docs/delivery.md "On Redis Cluster").
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from adapter.store import resp, scripts
from adapter.store.keys import Keys
from adapter.store.scripts import LuaScript

# The stream entry schema, the one place it is spelled in Python (tests/unit/test_delivery_calls.py pins every Lua
# script that writes or reads entries to it): target, ordering key, delivery id, body, attempts made.
ENTRY_FIELDS = ("t", "k", "id", "b", "n")
RELEASED_FIELD = "r"  # only on entries released from a hold list (outcome.lua): 1, or 2 for a batch's last

ATTEMPTS_KEPT = 200
HEAD = "head:"
RELEASING = "rel"  # the mark of a hold list whose deliveries are being released, a batch at a time
RELEASE_BATCH = 500  # deliveries one outcome moves from a hold list back to the stream, at most


@dataclass(frozen=True)
class Limits:
    """The engine's bounds (docs/delivery.md), as the scripts take them."""

    max_held: int = 10_000
    held_max_age_ms: int = 86_400_000
    max_dead: int = 10_000
    dead_max_age_ms: int = 7 * 86_400_000
    stream_maxlen: int = 250_000
    breaker_threshold: int = 20
    breaker_probe_ms: int = 30_000
    release_batch: int = RELEASE_BATCH

    @classmethod
    def of(cls, settings: Any) -> Limits:
        return cls(settings.delivery_max_held, int(settings.delivery_held_max_age * 1000),
                   settings.delivery_max_dead, int(settings.delivery_dead_max_age * 1000),
                   settings.delivery_stream_maxlen, settings.delivery_breaker_threshold,
                   int(settings.delivery_breaker_probe * 1000))

    def per_partition(self, partitions: int) -> Limits:
        """The caps one partition's scripts enforce when a target's held deliveries and dead letters are split
        over `partitions` (the cluster): each gets ceil(cap / partitions), so the target's total stays within
        the cap (docs/delivery.md "On Redis Cluster"). One partition: unchanged."""
        if partitions <= 1:
            return self
        return replace(self, max_held=math.ceil(self.max_held / partitions),
                       max_dead=math.ceil(self.max_dead / partitions))


@dataclass(frozen=True)
class Delivery:
    target: str
    key: str
    id: str
    body: bytes
    attempts: int  # made so far
    released: int = 0  # 1: released from a hold list; 2: the last of a released batch, more wait behind it

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Delivery:
        def get(name: str) -> Any:
            value = fields.get(name, fields.get(name.encode()))
            return value.decode() if isinstance(value, bytes) and name != "b" else value

        body = get("b")
        return cls(get("t"), get("k"), get("id"), body if isinstance(body, bytes) else str(body).encode(),
                   int(get("n") or 0), int(get("r") or 0))

    def fields(self) -> dict[str, Any]:
        """The stream entry (ENTRY_FIELDS)."""
        return dict(zip(ENTRY_FIELDS, (self.target, self.key, self.id, self.body, self.attempts), strict=True))

    def to_json(self, held_at: int | None = None) -> bytes:
        d = {"t": self.target, "k": self.key, "id": self.id, "b": self.body.decode(), "n": self.attempts}
        return orjson.dumps(d if held_at is None else {**d, "h": held_at})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Delivery:
        d = orjson.loads(raw)
        return cls(d["t"], d["k"], d["id"], d["b"].encode(), int(d["n"]))


def partition_of(key: str, partitions: int) -> int:
    """As fanout.lua: sha1(key)[:8] mod partitions."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % partitions


def attempt_record(d: Delivery, outcome: str, status: int | None, duration_ms: float, error: str | None,
                   excerpt: str) -> bytes:
    return orjson.dumps({
        "deliveryId": d.id, "eventId": d.id.split(":callback:")[0].split(":route:")[0], "attempt": d.attempts + 1,
        "time": int(time.time()), "status": status, "durationMs": round(duration_ms, 1), "error": error,
        "excerpt": excerpt, "outcome": outcome,
    })


def dead_record(d: Delivery, error: str | None, status: int | None) -> bytes:
    return orjson.dumps({"deliveryId": d.id, "key": d.key, "body": d.body.decode(), "attempts": d.attempts + 1,
                         "lastError": error or f"HTTP {status}", "lastStatus": status, "time": int(time.time())})


def kind_and_id(target: str) -> tuple[str, str]:
    kind, _, target_id = target.partition(":")
    return kind, target_id


class OutcomeName(StrEnum):
    """What one attempt ended as, spelled as outcome.lua and the attempt records spell it."""

    SUCCESS = "success"
    RETRY = "retry"  # again at its due time
    FAILED = "failed"  # a permanent error: dead-lettered
    DEAD = "dead"  # retries exhausted: dead-lettered
    DROPPED = "dropped"  # its target is gone or disabled
    DEFERRED = "deferred"  # not sent (breaker open, target slow): again later, no attempt counted


RECORDED = (OutcomeName.SUCCESS, OutcomeName.RETRY, OutcomeName.FAILED, OutcomeName.DEAD)  # in a target's attempts
DEAD_LETTERED = (OutcomeName.FAILED, OutcomeName.DEAD)
AGAIN_LATER = (OutcomeName.RETRY, OutcomeName.DEFERRED)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


@dataclass(frozen=True)
class Outcome:
    """What one attempt ended as (`OutcomeName`), with what the attempt record keeps."""

    name: OutcomeName
    status: int | None = None
    duration_ms: float = 0.0
    error: str | None = None
    excerpt: str = ""
    due_ms: int | None = None


OUTCOME = LuaScript(scripts.source("delivery/outcome.lua"))
HOLD = LuaScript(scripts.source("delivery/hold.lua"))


class ScriptCall(NamedTuple):
    """One script call, its KEYS and ARGV built by name in one function each (below); the Lua header of each
    script lists the same layout (tests/unit/test_delivery_calls.py pins both). A tuple: built per delivery."""

    script: LuaScript
    keys: tuple[str, ...]
    args: tuple[Any, ...]

    def packed(self) -> bytes:
        """The EVALSHA as RESP, for the batcher (one Redis)."""
        return resp.pack("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)

    async def run(self, client: Any) -> Any:
        """EVALSHA through a client (redis-py routes it by its KEYS on a cluster)."""
        return await scripts.call(client, self.script, len(self.keys), *self.keys, *self.args)


def outcome_call(keys: Keys, partition: int, group: str, entry_id: str, d: Delivery, o: Outcome,
                 cb_type: str | None, limits: Limits, now_ms: int) -> ScriptCall:
    """Everything an attempt's outcome writes, as one atomic script call (outcome.lua): every key in the slot of
    the delivery's partition."""
    p = partition
    record = attempt_record(d, o.name, o.status, o.duration_ms, o.error, o.excerpt)
    extra: bytes = b""
    if o.name in AGAIN_LATER:
        extra = Delivery(d.target, d.key, d.id, d.body, d.attempts + (o.name == OutcomeName.RETRY)).to_json()
    elif o.name in DEAD_LETTERED:
        extra = dead_record(d, o.error, o.status)
    state = keys.delivery_state(d.target, p)
    # a route has no stats hash: on one Redis "" (as ever), on the cluster a key of the slot that is not written
    stats = keys.callback_stats_in(cb_type, p) if cb_type else (state if keys.cluster else "")
    call_keys = (keys.delivery_stream(p), keys.delivery_counts(d.target, p), keys.attempts(d.target, p),
                 keys.delivery_retry(p), keys.delivery_hold(d.target, d.key), keys.dead(d.target, p), stats,
                 keys.delivery_holds(p), keys.delivery_held(d.target, p), state, keys.dead_index(d.target, p),
                 keys.metrics_in(p))
    args = (group, entry_id, o.name, record, ATTEMPTS_KEPT, d.id, extra, o.due_ms or 0, d.released, now_ms,
            limits.release_batch, limits.max_dead, limits.dead_max_age_ms, limits.breaker_threshold,
            limits.breaker_probe_ms, d.target, limits.stream_maxlen, limits.held_max_age_ms,
            "1" if cb_type else "0")
    return ScriptCall(OUTCOME, call_keys, args)


def outcome_command(keys: Keys, partition: int, group: str, entry_id: str, d: Delivery, o: Outcome,
                    cb_type: str | None, limits: Limits, now_ms: int) -> bytes:
    """`outcome_call` as RESP, for the batcher."""
    return outcome_call(keys, partition, group, entry_id, d, o, cb_type, limits, now_ms).packed()


def hold_call(keys: Keys, partition: int, group: str, entry_id: str, d: Delivery, limits: Limits,
              now_ms: int) -> ScriptCall:
    """Park `d` behind the delivery of its target and key that is being retried, within the target's caps
    (hold.lua; acknowledged in the same step). A delivery of a released batch goes ahead of what was never
    released."""
    p = partition
    call_keys = (keys.delivery_hold(d.target, d.key), keys.delivery_held(d.target, p),
                 keys.delivery_state(d.target, p), keys.delivery_stream(p), keys.metrics_in(p))
    args = (group, entry_id, d.to_json(now_ms), "1" if d.released else "0", limits.max_held,
            limits.held_max_age_ms, now_ms, d.target)
    return ScriptCall(HOLD, call_keys, args)


def hold_command(keys: Keys, partition: int, group: str, entry_id: str, d: Delivery, limits: Limits,
                 now_ms: int) -> bytes:
    """`hold_call` as RESP, for the batcher."""
    return hold_call(keys, partition, group, entry_id, d, limits, now_ms).packed()


# Move due retries back to their streams.
# KEYS  1 the retry set  2 (cluster) the partition's stream; absent: the stream is ARGV 3 .. sha1 partition
# ARGV  1 now (ms)  2 at most this many  3 stream prefix (one Redis)  4 partitions (one Redis)  5 stream MAXLEN
MOVE_DUE = LuaScript("""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, raw in ipairs(due) do
  local d = cjson.decode(raw)
  local stream = KEYS[2]
  if not stream then
    stream = ARGV[3] .. (tonumber(string.sub(redis.sha1hex(d.k), 1, 8), 16) % tonumber(ARGV[4]))
  end
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[5], '*', 't', d.t, 'k', d.k, 'id', d.id, 'b', d.b,
             'n', tostring(d.n))
  redis.call('ZREM', KEYS[1], raw)
end
return #due
""")


def move_due_call(keys: Keys, partition: int, now_ms: int, limit: int, maxlen: int) -> ScriptCall:
    """Due retries back to their streams: on one Redis from the one retry set to each one's partition stream
    (`partition` is ignored), on the cluster from partition `partition`'s set to its stream."""
    if keys.cluster:
        return ScriptCall(MOVE_DUE, (keys.delivery_retry(partition), keys.delivery_stream(partition)),
                          (now_ms, limit, "", 0, maxlen))
    return ScriptCall(MOVE_DUE, (keys.delivery_retry(),),
                      (now_ms, limit, keys.delivery_stream_prefix(), keys.stream_partitions, maxlen))
