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
  skipped. Each device that looks missing is therefore looked up alone (`GET /clients/{id}`) before it is
  taken offline.
- Each correction is applied under WATCH of the client's hash, compared with the state the decision was
  made on: a real event that lands in between wins and the correction is dropped (counted as `raced`).
  A real event that lands after it is ordered by `(clientid, connected_at)` as usual.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.exceptions

from adapter.broker.client import EmqxClient
from adapter.devices.store import DEVICE_PRESENCE, device_call
from adapter.ingest.events import Connected, Disconnected
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

REASON = "reconciled"
STATE = ("device", "online", "connected_at", "ended_through", "version")
CHUNK = 500
EMQX_MAX_LIMIT = 10_000  # the largest `limit` EMQX's /clients accepts


@dataclass
class Outcome:
    online: int = 0  # offline in Redis, connected in EMQX: brought online
    offline: int = 0  # online in Redis, unknown to EMQX: taken offline
    raced: int = 0  # dropped: a real event changed the device in between
    checked: int = 0  # devices online in Redis + clients connected in EMQX
    corrected: list[str] = field(default_factory=list)

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


async def connected_in_emqx(emqx: EmqxClient, page_size: int) -> dict[str, int | None]:
    """clientid → connected_at (ms) of every client EMQX has connected, all pages."""
    out: dict[str, int | None] = {}
    page = 1
    while True:
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


async def apply_guarded(r: AsyncRedis, keys: Keys, ev: Connected | Disconnected,
                        seen: list[Any]) -> bool | None:
    """Run the device script for `ev` unless the client's state differs from `seen`; True when it made a
    transition, False when the rules made it a no-op, None when the state had moved (raced). Every key of
    the call is in the client's slot, so WATCH and MULTI hold on a cluster too."""
    key = keys.client(ev.clientid)
    call_keys, argv = device_call(keys, ev)
    async with r.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(key)
            if list(await pipe.hmget(key, STATE)) != list(seen):
                await pipe.unwatch()
                return None
            pipe.multi()
            # execute_command: a cluster pipeline refuses `evalsha` by name, not the command
            pipe.execute_command("EVALSHA", DEVICE_PRESENCE.sha, len(call_keys), *call_keys, *argv)
            [reply] = await pipe.execute()
        except redis.exceptions.WatchError:
            return None
    return reply is not None


async def _ensure_script(r: AsyncRedis) -> None:
    if not (await r.script_exists(DEVICE_PRESENCE.sha))[0]:
        await r.script_load(DEVICE_PRESENCE.script)


async def still_gone(emqx: EmqxClient, clientid: str) -> bool:
    found = await emqx.client(clientid)
    return found is None or found.get("connected") is not True


async def reconcile(r: AsyncRedis, emqx: EmqxClient, keys: Keys, page_size: int) -> Outcome:
    started_ms = int(time.time() * 1000)
    snapshot = await online_snapshot(r, keys)
    connected = await connected_in_emqx(emqx, page_size)
    outcome = Outcome(checked=len(snapshot) + len(connected))
    await _ensure_script(r)
    for sn in to_offline(snapshot, connected, started_ms):
        if not await still_gone(emqx, sn):
            continue
        seen = snapshot[sn]
        ev = Disconnected(sn, int(time.time() * 1000), REASON, connected_at=_num(seen[2]))
        _count(outcome, sn, await apply_guarded(r, keys, ev, seen), online=False)
    offline = [cid for cid in connected if cid not in snapshot]
    states = await _states(r, keys, offline)
    for cid in to_online(states, connected):
        at = connected[cid]
        assert at is not None
        _count(outcome, cid, await apply_guarded(r, keys, Connected(cid, at), states[cid]),
               online=True)
    return outcome


def _count(outcome: Outcome, cid: str, applied: bool | None, *, online: bool) -> None:
    if applied is None:
        outcome.raced += 1
    elif applied:
        outcome.corrected.append(cid)
        if online:
            outcome.online += 1
        else:
            outcome.offline += 1
