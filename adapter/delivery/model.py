"""Deliveries (event × target) and what each attempt's outcome writes (docs/design.md §6).

A delivery is a stream entry: `t` target ("callback:1", "route:4"), `k` ordering key (the device), `id`
delivery id (stable across attempts: the receivers' idempotency key and the `webhook-id`), `b` the JSON
body, `n` attempts made so far. Entries of one key go to one partition, so one pump sees them in order.

First attempt and retry share this one path; the attempt number is data. A retry parks the delivery in
a sorted set by due time, and later deliveries of the same target and key wait behind it in a hold list
(order per device), released when it ends (delivered or dead-lettered), a batch at a time: the released
entries carry `r` 1, the last of a batch 2 when more wait, and that one's outcome releases the next batch.
A delivery whose target's breaker is open is `deferred`: parked like a retry, without counting an attempt.
Held deliveries and dead letters are capped per target (count and age; the oldest go, counted).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from adapter.store import resp, scripts
from adapter.store.keys import Keys
from adapter.store.scripts import LuaScript

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
        return {"t": self.target, "k": self.key, "id": self.id, "b": self.body, "n": self.attempts}

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


def outcome_command(keys: Keys, partition: int, group: str, entry_id: str, d: Delivery, o: Outcome,
                    cb_type: str | None, limits: Limits, now_ms: int) -> bytes:
    """Everything an attempt's outcome writes, as one atomic script call (outcome.lua)."""
    kind, target_id = kind_and_id(d.target)
    record = attempt_record(d, o.name, o.status, o.duration_ms, o.error, o.excerpt)
    extra: bytes = b""
    if o.name in AGAIN_LATER:
        extra = Delivery(d.target, d.key, d.id, d.body, d.attempts + (o.name == OutcomeName.RETRY)).to_json()
    elif o.name in DEAD_LETTERED:
        extra = dead_record(d, o.error, o.status)
    call_keys = [keys.delivery_stream(partition), keys.target(kind, target_id), keys.attempts(d.target),
                 keys.delivery_retry(), keys.delivery_hold(d.target, d.key), keys.dead(d.target),
                 keys.callback_stats(cb_type) if cb_type else "", keys.delivery_holds(partition),
                 keys.delivery_held(d.target), keys.delivery_state(d.target), keys.dead_index(d.target),
                 keys.metrics()]
    return resp.pack("EVALSHA", OUTCOME.sha, len(call_keys), *call_keys, group, entry_id, o.name, record,
                     ATTEMPTS_KEPT, d.id, extra, o.due_ms or 0, d.released, now_ms, limits.release_batch,
                     limits.max_dead, limits.dead_max_age_ms, limits.breaker_threshold, limits.breaker_probe_ms,
                     d.target, limits.stream_maxlen, limits.held_max_age_ms)


def hold_command(keys: Keys, stream: str, group: str, entry_id: str, d: Delivery, limits: Limits,
                 now_ms: int) -> bytes:
    """Park `d` behind the delivery of its target and key that is being retried, within the target's caps
    (hold.lua; acknowledged in the same step). A delivery of a released batch goes ahead of what was never
    released."""
    call_keys = [keys.delivery_hold(d.target, d.key), keys.delivery_held(d.target),
                 keys.delivery_state(d.target), stream, keys.metrics()]
    return resp.pack("EVALSHA", HOLD.sha, len(call_keys), *call_keys, group, entry_id, d.to_json(now_ms),
                     "1" if d.released else "0", limits.max_held, limits.held_max_age_ms, now_ms, d.target)


# move due retries back to their partition streams
MOVE_DUE = LuaScript("""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, raw in ipairs(due) do
  local d = cjson.decode(raw)
  local p = tonumber(string.sub(redis.sha1hex(d.k), 1, 8), 16) % tonumber(ARGV[4])
  redis.call('XADD', ARGV[3] .. p, 'MAXLEN', '~', ARGV[5], '*', 't', d.t, 'k', d.k, 'id', d.id, 'b', d.b,
             'n', tostring(d.n))
  redis.call('ZREM', KEYS[1], raw)
end
return #due
""")
