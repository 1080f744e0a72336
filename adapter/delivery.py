"""Deliveries (event × target) and what each attempt's outcome writes (DESIGN §6).

A delivery is a stream entry: `t` target ("callback:1", "route:4"), `k` ordering key (the device), `id`
delivery id (stable across attempts: the receivers' idempotency key and the `webhook-id`), `b` the JSON
body, `n` attempts made so far. Entries of one key go to one partition, so one pump sees them in order.

First attempt and retry share this one path; the attempt number is data. A retry parks the delivery in
a sorted set by due time, and later deliveries of the same target and key wait behind it in a hold list
(order per device), released when it ends (delivered or dead-lettered).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson

from adapter.keys import Keys

ATTEMPTS_KEPT = 200
HEAD = "head:"


@dataclass(frozen=True)
class Delivery:
    target: str
    key: str
    id: str
    body: bytes
    attempts: int  # made so far

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Delivery:
        def get(name: str) -> Any:
            value = fields.get(name, fields.get(name.encode()))
            return value.decode() if isinstance(value, bytes) and name != "b" else value

        body = get("b")
        return cls(get("t"), get("k"), get("id"), body if isinstance(body, bytes) else str(body).encode(),
                   int(get("n") or 0))

    def fields(self) -> dict[str, Any]:
        return {"t": self.target, "k": self.key, "id": self.id, "b": self.body, "n": self.attempts}

    def to_json(self) -> bytes:
        return orjson.dumps({"t": self.target, "k": self.key, "id": self.id, "b": self.body.decode(),
                             "n": self.attempts})

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


@dataclass(frozen=True)
class Outcome:
    """What one attempt ended as: `success`; `retry` (with its due time); `failed` (a permanent error) or
    `dead` (retries exhausted), both dead-lettered; `dropped` (its target is gone or disabled)."""

    name: str
    status: int | None = None
    duration_ms: float = 0.0
    error: str | None = None
    excerpt: str = ""
    due_ms: int | None = None


def queue_outcome(pipe: Any, keys: Keys, stream: str, group: str, entry_id: str, d: Delivery, o: Outcome,
                  cb_type: str | None) -> None:
    """Everything an attempt's outcome writes, queued on one MULTI pipeline."""
    kind, target_id = kind_and_id(d.target)
    target_key = keys.target(kind, target_id)
    pipe.xack(stream, group, entry_id)
    pipe.xdel(stream, entry_id)
    pipe.lpush(keys.attempts(d.target), attempt_record(d, o.name, o.status, o.duration_ms, o.error, o.excerpt))
    pipe.ltrim(keys.attempts(d.target), 0, ATTEMPTS_KEPT - 1)
    hold = keys.delivery_hold(d.target, d.key)
    if o.name == "retry":
        assert o.due_ms is not None
        retried = Delivery(d.target, d.key, d.id, d.body, d.attempts + 1)
        pipe.zadd(keys.delivery_retry(), {retried.to_json(): o.due_ms})
        pipe.eval(_HOLD_HEAD, 1, hold, HEAD + d.id)
        return
    pipe.eval(RELEASE_HOLD, 2, hold, stream, HEAD + d.id)
    if o.name == "dropped":
        return
    counter, stat = ("succCount", "succ") if o.name == "success" else ("failedCount", "failed")
    pipe.eval(_COUNT_IF_EXISTS, 1, target_key, counter)
    if cb_type:
        pipe.hincrby(keys.callback_stats(cb_type), stat, 1)
    if o.name != "success":
        pipe.hset(keys.dead(d.target), d.id, dead_record(d, o.error, o.status))


# make `head` the first element of the hold list (creating it), unless it already is
_HOLD_HEAD = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then
  redis.call('LPUSH', KEYS[1], ARGV[1])
end
"""

_COUNT_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
"""

# the delivery that headed the hold list ended: put the held ones back on the stream, in order
RELEASE_HOLD = """
local head = redis.call('LINDEX', KEYS[1], 0)
if head ~= ARGV[1] then
  return 0
end
local held = redis.call('LRANGE', KEYS[1], 1, -1)
redis.call('DEL', KEYS[1])
for _, raw in ipairs(held) do
  local d = cjson.decode(raw)
  redis.call('XADD', KEYS[2], '*', 't', d.t, 'k', d.k, 'id', d.id, 'b', d.b, 'n', tostring(d.n))
end
return #held
"""

# move due retries back to their partition streams
MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, raw in ipairs(due) do
  local d = cjson.decode(raw)
  local p = tonumber(string.sub(redis.sha1hex(d.k), 1, 8), 16) % tonumber(ARGV[4])
  redis.call('XADD', ARGV[3] .. p, '*', 't', d.t, 'k', d.k, 'id', d.id, 'b', d.b, 'n', tostring(d.n))
  redis.call('ZREM', KEYS[1], raw)
end
return #due
"""
