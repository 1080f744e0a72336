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
from pathlib import Path
from typing import Any

import orjson

from adapter import resp
from adapter.keys import Keys
from adapter.presence_store import LuaScript

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


OUTCOME = LuaScript((Path(__file__).parent / "outcome.lua").read_text())


def outcome_command(keys: Keys, partition: int, group: str, entry_id: str, d: Delivery, o: Outcome,
                    cb_type: str | None) -> bytes:
    """Everything an attempt's outcome writes, as one atomic script call (outcome.lua)."""
    kind, target_id = kind_and_id(d.target)
    record = attempt_record(d, o.name, o.status, o.duration_ms, o.error, o.excerpt)
    extra: bytes = b""
    if o.name == "retry":
        extra = Delivery(d.target, d.key, d.id, d.body, d.attempts + 1).to_json()
    elif o.name in ("failed", "dead"):
        extra = dead_record(d, o.error, o.status)
    call_keys = [keys.delivery_stream(partition), keys.target(kind, target_id), keys.attempts(d.target),
                 keys.delivery_retry(), keys.delivery_hold(d.target, d.key), keys.dead(d.target),
                 keys.callback_stats(cb_type) if cb_type else "", keys.delivery_holds(partition)]
    return resp.pack("EVALSHA", OUTCOME.sha, len(call_keys), *call_keys, group, entry_id, o.name, record,
                     ATTEMPTS_KEPT, d.id, extra, o.due_ms or 0)


def hold_commands(keys: Keys, stream: str, group: str, entry_id: str, d: Delivery) -> list[bytes]:
    """Park `d` behind the delivery of its target and key that is being retried (acknowledged last)."""
    return [resp.pack("RPUSH", keys.delivery_hold(d.target, d.key), d.to_json()),
            resp.pack("XACK", stream, group, entry_id), resp.pack("XDEL", stream, entry_id)]


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
