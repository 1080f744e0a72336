"""Presence reconciliation (issue 14): what EMQX's `GET /clients` says is connected, against what Redis says
is online, for when a `client.connected` or `client.disconnected` was lost (EMQX gave up retrying it, or
its rule was off for a while).

A correction is a synthetic event through the SAME device script as the ingest's (device.lua around
presence.lua), so it obeys the presence rules, bumps the version and fires the status callbacks like a real
transition:
- online in Redis, not connected in EMQX → a disconnect of the recorded connection (its `connected_at`),
  reason `reconciled`, at the time of the correction;
- connected in EMQX, offline in Redis (a known device) → a connect with EMQX's `connected_at`.

Races (docs/devices.md "Reconciliation"):
- The online snapshot is read BEFORE EMQX is paged, and only devices whose recorded connection started
  before the run did are candidates: a device that connected during the paging is not missing.
- Paging EMQX by page number is not a snapshot: clients that leave shift the later pages, so one can be
  skipped. Each device that looks missing is therefore looked up by its id before it is taken offline
  (`GET /clients?clientid=…`, LOOKUP ids a request).
- Each correction is applied only if the client's hash still holds the state the decision was made on (the check
  and the write are one script call: guard.lua before device.lua), so a real event that lands in between wins and
  the correction is dropped (counted as `raced`). A batch of corrections is one round trip (the ingest's batcher).
  A real event that lands after it is ordered by `(clientid, connected_at)` as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapter.broker.client import EmqxClient
from adapter.devices.calls import GUARDED_PRESENCE, guarded_presence_call, packed
from adapter.protocol.events import Connected, Disconnected
from adapter.store.batcher import Batching
from adapter.store.connections import batcher_for
from adapter.store.keys import Keys
from adapter.store.outage import never
from adapter.store.types import AsyncRedis

REASON = "reconciled"
STATE = ("device", "online", "connected_at", "ended_through", "version")  # guard.lua's ARGV seen_<field>
ABSENT = "\0"  # a field the client hash did not have, as guard.lua spells it
CHUNK = 500
BATCH = 200  # corrections looked up in EMQX, then written in one batch
LOOKUP = 100  # client ids in one EMQX request (its query string stays a few KB)
Progress = Callable[[int, int], None]  # (corrections done, corrections to make)
EMQX_MAX_LIMIT = 10_000  # the largest `limit` EMQX's /clients accepts


@dataclass
class Outcome:
    online: int = 0  # offline in Redis, connected in EMQX: brought online
    offline: int = 0  # online in Redis, unknown to EMQX: taken offline
    raced: int = 0  # dropped: a real event changed the device in between
    checked: int = 0  # devices online in Redis + clients connected in EMQX
    corrected: list[str] = field(default_factory=list)
    stopped: bool = False  # the worker is stopping: the run ended early (corrections so far stand)

    def metrics(self) -> dict[str, int]:
        return {'reconcile_corrections_total{to="online"}': self.online,
                'reconcile_corrections_total{to="offline"}': self.offline,
                'reconcile_skipped_total{reason="raced"}': self.raced}


def epoch_ms(value: Any) -> int | None:
    """EMQX REST times: RFC 3339 with ms (`2024-01-01T12:34:56.789+08:00`), or epoch ms."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return None


def _num(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


async def _states(r: AsyncRedis, keys: Keys, ids: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for start in range(0, len(ids), CHUNK):
        group = ids[start:start + CHUNK]
        async with r.pipeline(transaction=False) as pipe:
            for cid in group:
                pipe.hmget(keys.client(cid), STATE)
            rows = await pipe.execute()
        out.update(zip(group, rows, strict=True))
    return out


async def online_snapshot(r: AsyncRedis, keys: Keys) -> dict[str, list[Any]]:
    """Every device Redis has online (every index shard), with its presence state as read now."""
    sns: list[str] = []
    for p in keys.shards():
        start = 0
        while True:
            batch = await r.zrange(keys.devices_online(p), start, start + 4999)
            sns += [str(s) for s in batch]
            if len(batch) < 5000:
                break
            start += 5000
    return await _states(r, keys, sns)


async def connected_in_emqx(emqx: EmqxClient, page_size: int,
                            stopping: Callable[[], bool] = never) -> dict[str, int | None] | None:
    """clientid → connected_at (ms) of every client EMQX has connected, all pages; None when `stopping()` said so
    between two pages (a part of the list must not take anyone offline)."""
    out: dict[str, int | None] = {}
    page = 1
    while True:
        if stopping():
            return None
        found = await emqx.clients(page, min(page_size, EMQX_MAX_LIMIT), conn_state="connected",
                                   fields=("clientid", "connected", "connected_at"))
        for c in found.items:
            if c.get("connected") is True and isinstance(c.get("clientid"), str):
                out[c["clientid"]] = epoch_ms(c.get("connected_at"))
        if not found.hasnext or not found.items:
            return out
        page += 1


def to_offline(snapshot: dict[str, list[Any]], connected: Iterable[str], started_ms: int) -> list[str]:
    """Online devices EMQX did not list, whose recorded connection began before the run."""
    listed = set(connected)
    out = []
    for sn, (_device, online, connected_at, _ended, _version) in snapshot.items():
        c = _num(connected_at)
        if online == "1" and sn not in listed and c is not None and c < started_ms:
            out.append(sn)
    return out


def to_online(states: dict[str, list[Any]], connected: dict[str, int | None]) -> list[str]:
    """Known devices EMQX has connected that Redis has offline, when EMQX's connection is newer than every
    connection Redis saw start or end (else the presence rules would ignore it anyway)."""
    out = []
    for cid, (device, online, connected_at, ended, _version) in states.items():
        at = connected.get(cid)
        if device != "1" or online == "1" or at is None:
            continue
        if all(bound is None or at > bound for bound in (_num(connected_at), _num(ended))):
            out.append(cid)
    return out


RACED = -1  # guard.lua's answer when the state moved


def guarded_call(keys: Keys, ev: Connected | Disconnected, seen: list[Any]) -> bytes:
    """GUARDED_PRESENCE for `ev`, guarded by the client's state as the decision saw it (STATE's fields)."""
    return packed(guarded_presence_call(keys, ev, **{f"seen_{name}": ABSENT if v is None else str(v)
                                                     for name, v in zip(STATE, seen, strict=True)}))


def _applied(reply: Any) -> bool | None:
    """True when the correction made a transition, False when the rules made it a no-op, None when the state had
    moved (raced)."""
    if isinstance(reply, Exception):
        raise reply
    if reply == RACED:
        return None
    return reply is not None


async def apply_guarded(r: AsyncRedis, keys: Keys, ev: Connected | Disconnected,
                        seen: list[Any]) -> bool | None:
    """Run the device script for `ev` unless the client's state differs from `seen` (the check and the write are
    one script call, guard.lua); see `_applied`. Every key of the call is in the client's slot."""
    [applied] = await apply_many(batcher_for(r, [GUARDED_PRESENCE]), [guarded_call(keys, ev, seen)])
    return applied


async def apply_many(batcher: Batching, calls: list[bytes]) -> list[bool | None]:
    """Guarded corrections, all in one batch (one round trip per node)."""
    return [_applied(reply) for reply in await batcher.submit(calls)]


async def still_gone(emqx: EmqxClient, clientid: str) -> bool:
    found = await emqx.client(clientid)
    return found is None or found.get("connected") is not True


async def still_gone_many(emqx: EmqxClient, clientids: list[str]) -> set[str]:
    """Of `clientids`, those EMQX does not have connected: asked LOOKUP at a time, by client id (`GET
    /clients?clientid=a&clientid=b…`, a lookup, not a page of the list: nothing shifts under it)."""
    connected: set[str] = set()
    for start in range(0, len(clientids), LOOKUP):
        group = clientids[start:start + LOOKUP]
        found = await emqx.clients(1, len(group), clientid=group, fields=("clientid", "connected"))
        connected |= {c["clientid"] for c in found.items if c.get("connected") is True}
    return set(clientids) - connected


async def reconcile(r: AsyncRedis, emqx: EmqxClient, keys: Keys, page_size: int,
                    stopping: Callable[[], bool] = never, progress: Progress | None = None,
                    batch_size: int = BATCH) -> Outcome:
    """One run; `stopping()` is asked between two pages and two batches of corrections: the run then ends early.
    Corrections go `batch_size` at a time: their EMQX lookups at once, then their guarded writes at once (each its own
    WATCH/MULTI); `progress(done, total)` after each batch."""
    started_ms = int(time.time() * 1000)
    snapshot = await online_snapshot(r, keys)
    connected = await connected_in_emqx(emqx, page_size, stopping)
    if connected is None:
        return Outcome(checked=len(snapshot), stopped=True)
    outcome = Outcome(checked=len(snapshot) + len(connected))
    batcher = batcher_for(r, [GUARDED_PRESENCE])
    await batcher.load_scripts()
    gone = to_offline(snapshot, connected, started_ms)
    offline = [cid for cid in connected if cid not in snapshot]
    states = await _states(r, keys, offline)
    coming = to_online(states, connected)
    total, done = len(gone) + len(coming), 0
    for start in range(0, len(gone), batch_size):
        if stopping():
            outcome.stopped = True
            return outcome
        batch = gone[start:start + batch_size]
        away = await still_gone_many(emqx, batch)
        events = [(sn, Disconnected(sn, int(time.time() * 1000), REASON, connected_at=_num(snapshot[sn][2])))
                  for sn in batch if sn in away]
        applied = await apply_many(batcher, [guarded_call(keys, ev, snapshot[sn]) for sn, ev in events])
        for (sn, _), result in zip(events, applied, strict=True):
            _count(outcome, sn, result, online=False)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    for start in range(0, len(coming), batch_size):
        if stopping():
            outcome.stopped = True
            return outcome
        batch = coming[start:start + batch_size]
        applied = await apply_many(batcher, [guarded_call(keys, Connected(cid, _at(connected, cid)), states[cid])
                                             for cid in batch])
        for cid, result in zip(batch, applied, strict=True):
            _count(outcome, cid, result, online=True)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return outcome


def _at(connected: dict[str, int | None], cid: str) -> int:
    at = connected[cid]
    assert at is not None  # (to_online took only those with a time)
    return at


def _count(outcome: Outcome, cid: str, applied: bool | None, *, online: bool) -> None:
    if applied is None:
        outcome.raced += 1
    elif applied:
        outcome.corrected.append(cid)
        if online:
            outcome.online += 1
        else:
            outcome.offline += 1
