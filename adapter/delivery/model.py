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

import functools
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import chain
from typing import Any

import orjson

from adapter.store.keys import Keys
from adapter.store.scripts import Script, ScriptCall

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
        """A stream entry as the pump reads it (bytes keys and values), or as text (str keys)."""
        if b"t" in fields:  # the pump's client does not decode: the hot path
            released = fields.get(b"r")
            return cls(fields[b"t"].decode(), fields[b"k"].decode(), fields[b"id"].decode(), fields[b"b"],
                       int(fields.get(b"n") or 0), int(released) if released else 0)

        def get(name: str) -> Any:
            value = fields.get(name)
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
    """As `partition_of` of entries.lua: sha1(key)[:8] mod partitions."""
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


OUTCOME = Script.load("delivery/outcome.lua")
HOLD = Script.load("delivery/hold.lua")
MOVE_DUE = Script.load("delivery/move_due.lua")
_OUTCOME = OUTCOME.positional(
    "stream", "counts", "attempts", "retry", "hold", "dead", "stats", "holds", "held", "state", "dead_index",
    "metrics", "group", "entry_id", "outcome", "record", "attempts_kept", "delivery_id", "parked", "due", "released",
    "now", "release_batch", "max_dead", "dead_max_age", "breaker_threshold", "breaker_probe", "target", "maxlen",
    "held_max_age", "count_stats")
_HOLD = HOLD.positional("hold", "held", "state", "stream", "metrics", "group", "entry_id", "delivery", "released",
                        "max_held", "held_max_age", "now", "target", "delivery_id")


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
    head, tail = _outcome_keys(keys, d.target, p, cb_type)
    return _OUTCOME(*head, keys.delivery_hold(d.target, d.key), *tail, group, entry_id, o.name, record, ATTEMPTS_KEPT,
                    d.id, extra, o.due_ms or 0, d.released, now_ms, limits.release_batch, limits.max_dead,
                    limits.dead_max_age_ms, limits.breaker_threshold, limits.breaker_probe_ms, d.target,
                    limits.stream_maxlen, limits.held_max_age_ms, "1" if cb_type else "0")


@functools.lru_cache(maxsize=4096)
def _outcome_keys(keys: Keys, target: str, p: int, cb_type: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """outcome.lua's KEYS but the hold list (the device's): those before it and after it, the same for every
    delivery of a target in a partition (built once, not per delivery)."""
    state = keys.delivery_state(target, p)
    # a route has no stats hash: on one Redis "" (as ever), on the cluster a key of the slot that is not written
    stats = keys.callback_stats_in(cb_type, p) if cb_type else (state if keys.cluster else "")
    return ((keys.delivery_stream(p), keys.delivery_counts(target, p), keys.attempts(target, p),
             keys.delivery_retry(p)),
            (keys.dead(target, p), stats, keys.delivery_holds(p), keys.delivery_held(target, p), state,
             keys.dead_index(target, p), keys.metrics_in(p)))


def outcomes(calls: Sequence[ScriptCall]) -> ScriptCall:
    """Outcome calls of one partition merged into one call of outcome.lua (it answers one mark per outcome)."""
    if len(calls) == 1:
        return calls[0]
    return ScriptCall(OUTCOME, tuple(chain.from_iterable(c.keys for c in calls)),
                      tuple(chain.from_iterable(c.args for c in calls)))


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
    return _HOLD(keys.delivery_hold(d.target, d.key), keys.delivery_held(d.target, p), keys.delivery_state(d.target, p),
                 keys.delivery_stream(p), keys.metrics_in(p), group, entry_id, d.to_json(now_ms),
                 "1" if d.released else "0", limits.max_held, limits.held_max_age_ms, now_ms, d.target, d.id)


def hold_command(keys: Keys, partition: int, group: str, entry_id: str, d: Delivery, limits: Limits,
                 now_ms: int) -> bytes:
    """`hold_call` as RESP, for the batcher."""
    return hold_call(keys, partition, group, entry_id, d, limits, now_ms).packed()


def move_due_call(keys: Keys, partition: int, now_ms: int, limit: int, maxlen: int) -> ScriptCall:
    """Due retries back to their streams: on one Redis from the one retry set to each one's partition stream
    (`partition` is ignored), on the cluster from partition `partition`'s set to its stream."""
    if keys.cluster:
        return MOVE_DUE.call(retry=keys.delivery_retry(partition), stream=(keys.delivery_stream(partition),),
                             now=now_ms, limit=limit, stream_prefix="", partitions=0, maxlen=maxlen)
    return MOVE_DUE.call(retry=keys.delivery_retry(), stream=(), now=now_ms, limit=limit,
                         stream_prefix=keys.delivery_stream_prefix(), partitions=keys.stream_partitions, maxlen=maxlen)
