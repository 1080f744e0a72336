"""What a pump knows of its targets: each one's url, secret and callback type (read at most once a second), and its
breaker, as the outcomes in Redis wrote it and as this pump's own attempts saw it (docs/delivery.md).

The breaker lives in the target's engine state (`Keys.delivery_state`), which outcome.lua writes. On one Redis
that is one hash per target, so one `Target` object per target here; on Redis Cluster it is one hash per
(target, partition) — a lane — so a target has one `Target` per lane it delivers on, and each lane's breaker
opens, probes and closes on its own ("On Redis Cluster" in docs/delivery.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from adapter.delivery import signing
from adapter.delivery.model import kind_and_id
from adapter.store import faults, scripts
from adapter.store.cluster_round import cluster_round
from adapter.store.keys import Keys
from adapter.store.scripts import Script
from adapter.store.types import as_text

FRESH_S = 1.0  # a target's record is read again after this long

# claim the probe of an open breaker: 1 this pump sends it, 0 not yet (or another pump does), 2 closed meanwhile
PROBE = Script("""-- KEYS: state
-- ARGV: now, probe_ms
-- KEYS 1 the engine state (of the lane); ARGV 1 now (ms) 2 probe interval (ms)
local f = redis.call('HMGET', KEYS[1], 'breaker', 'probeAt')
if f[1] ~= 'open' then return 2 end
if (tonumber(f[2]) or 0) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'probeAt', tonumber(ARGV[1]) + tonumber(ARGV[2]))
return 1
""", "breaker.PROBE")


@dataclass
class Target:
    url: str
    enabled: bool
    key: bytes
    cb_type: str | None
    fetched: float
    open: bool = False  # the breaker
    probe_at: int = 0  # ms
    failures: int = 0  # in a row, as this pump saw them (the breaker opens here at once, not at the next fetch)
    observed: int = 0  # this pump's own verdicts so far (never reset): a fetch that began before one keeps them

    def succeeded(self) -> None:
        """This pump's attempt was delivered: the breaker closes, as the outcome script does."""
        self.open, self.failures = False, 0
        self.observed += 1

    def failed(self, threshold: int, probe_ms: int) -> None:
        """This pump's attempt failed (to be tried again): the breaker opens here at once after `threshold` in a
        row, as the outcome script does in Redis."""
        self.failures += 1
        if self.failures >= threshold:
            self.open, self.probe_at = True, now_ms() + probe_ms
        self.observed += 1


def now_ms() -> int:
    return int(time.time() * 1000)


class Targets:
    """The pump's targets, one `Target` per (target, lane): what its deliveries learn (the breaker) they share."""

    def __init__(self, client: Any, keys: Keys, probe_ms: int) -> None:
        self.redis = client
        self.keys = keys
        self.probe_ms = probe_ms
        self.cached: dict[tuple[str, int], Target] = {}

    def lane(self, p: int) -> int:
        """The lane of stream partition `p`: itself on the cluster, the one lane (0) on one Redis."""
        return p if self.keys.cluster else 0

    def fresh(self, name: str, p: int) -> Target | None:
        """The target as last read when that read is fresh (FRESH_S), else None (`get` reads it): what nearly
        every delivery needs, without a coroutine or a Redis call."""
        cached = self.cached.get((name, self.lane(p)))
        return cached if cached and time.monotonic() - cached.fetched < FRESH_S else None

    async def get(self, name: str, p: int) -> Target | None:
        """The target `name` as its deliveries of partition `p` see it; None when it is gone. While Redis cannot
        be read, the last record read (if any) stands."""
        fresh = self.fresh(name, p)
        if fresh is not None:
            return fresh
        lane = self.lane(p)
        cached = self.cached.get((name, lane))
        observed = cached.observed if cached else 0
        kind, target_id = kind_and_id(name)
        try:
            record, state = self.keys.target(kind, target_id), self.keys.delivery_state(name, lane)
            (url, enabled, secret, cb_type), (breaker, probe_at, failures) = await cluster_round(self.redis, [
                (record, ("HMGET", record, "url", "enabled", "secret", "type")),
                (state, ("HMGET", state, "breaker", "probeAt", "failures"))])
        except Exception as exc:
            # Redis in trouble (on the cluster: perhaps only the node of the targets' slot, failing over): what
            # this pump read last stands until a read succeeds, so that the partitions on other nodes go on
            if cached is None or not faults.trouble(exc):
                raise
            return cached
        if url is None or secret is None:
            self.cached.pop((name, lane), None)
            return None
        t = Target(as_text(url), as_text(enabled or b"") in ("1", "true"), signing.secret_bytes(as_text(secret)),
                   as_text(cb_type) if cb_type is not None and kind == "callback" else None, time.monotonic(),
                   breaker is not None and as_text(breaker) == "open", int(probe_at or 0), int(failures or 0))
        cached = self.cached.get((name, lane))  # again: another delivery may have fetched it meanwhile
        if cached is None:
            self.cached[(name, lane)] = t
            return t
        if cached.observed != observed:
            # this pump's attempts judged the breaker after this read began (their outcomes may not be written
            # yet): the read is older than they are, so it must not reopen a breaker they opened, nor reset
            # their count of failures; the next fetch reads what their outcomes wrote
            t.open, t.probe_at, t.failures = cached.open, cached.probe_at, cached.failures
        t.observed = cached.observed
        vars(cached).update(vars(t))
        return cached

    async def probe(self, name: str, p: int, target: Target) -> bool:
        """Whether this delivery is the probe of its lane's open breaker (one per probe interval)."""
        now = now_ms()
        if now < target.probe_at:
            return False
        claimed = int(await scripts.call(self.redis, PROBE.call(state=self.keys.delivery_state(name, self.lane(p)),
                                                                now=now, probe_ms=self.probe_ms)))
        if claimed == 2:
            target.open = False
            return True
        target.probe_at = now + self.probe_ms
        return claimed == 1
