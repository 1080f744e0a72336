"""A rollout's driver: one tick every TICK_S, run by the RQ job that holds the rollout's lease (chain.py).

A tick:
1. writes the commands of a `pending` batch (dispatched by a driver that died before writing them; `onlyNew`, so a
   command written already is not written twice);
2. settles executions: reads the commands in flight (a rotating window of SETTLE_BATCH, plus every one past its
   deadline) and turns finished ones into outcomes; cancels the command of one past its deadline (timed out), and
   while the rollout is cancelled or aborted the commands not sent yet;
3. decides: abort (the rule fires on the counts), finished (the walk is through and nothing is in flight), or how
   many to dispatch now: the token bucket at the ramped rate, capped by the room under maxInFlight;
4. walks the selector's index from its cursor for that many matches (skipping devices dispatched already), takes
   their command ids, and commits everything in one rollout.lua call, fenced by the lease: the dispatched devices,
   their pending batch, the outcomes, the counts, the cursor, the state;
5. writes the batch's commands, then clears `pending`.
A SIGKILL anywhere loses nothing and doubles nothing: before the commit nothing happened (unused ids are a gap),
after it the batch is pending until written, and writing it again skips what exists.

When the walk reaches the end of the index while executions are still in flight, it starts again after RESCAN_MS:
devices that came to match meanwhile (came online, got the tag, were registered) join the rollout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from adapter.commands import calls as command_calls
from adapter.commands.ids import id_str, parse_id
from adapter.commands.records import CommandStore, create_calls, partition
from adapter.commands.rules import Limits
from adapter.devices import selection
from adapter.devices.selection import Source
from adapter.rollouts import calls
from adapter.rollouts.spec import ACTIVE, Outcome, RolloutState, Spec, abort_reason, rate_now, refill, spec_of
from adapter.settings import Settings
from adapter.store.connections import texts
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

TICK_S = 0.1
LEASE_MS = 5_000
EXAMINE_MAX = 5_000  # candidates one tick may look at
DISPATCH_MAX = 250  # devices one tick may dispatch to: each script call stays short (a progress read waits behind it)
SETTLE_BATCH = 1_000
RESCAN_MS = 5_000
STOPPING = (RolloutState.CANCELLED.value, RolloutState.ABORTED.value)


def now_ms() -> int:
    return int(time.time() * 1000)


def pause(behind: bool, took: float) -> float:
    """Seconds to wait after a tick that took `took`: TICK_S, or, behind (the tick dispatched DISPATCH_MAX), as long
    as the tick took: a rollout at full speed holds Redis and a core at most half the time, so the API's reads do
    not queue behind it (docs/rollouts.md "Speed")."""
    return min(TICK_S, max(0.0, took)) if behind else TICK_S


def outcome_of(state: str | None, reason: str | None) -> Outcome | None:
    """An execution's outcome from its command's `state` and `reason` (None: not finished; a command that is gone
    expired unfinished: failed)."""
    if state is None:
        return Outcome.FAILED
    if state == "2":
        return Outcome.SUCCEEDED
    if state == "3":
        return Outcome.CANCELLED if reason == "canceled" else Outcome.FAILED
    return None


@dataclass
class Tick:
    record: dict[str, str]
    in_flight: int
    now: int
    settled: list[tuple[str, str]]


@dataclass
class Driver:
    client: AsyncRedis
    keys: Keys
    rid: int
    me: str  # the RQ job id holding the lease
    spec: Spec
    src: Source
    behind: bool = False  # the last tick dispatched DISPATCH_MAX: the next one follows soon (`pause`)

    @classmethod
    async def load(cls, client: AsyncRedis, keys: Keys, settings: Settings, rid: int, me: str) -> Driver | None:
        raw = await client.hget(keys.rollout(rid), "spec")
        if raw is None:
            return None
        spec = spec_of(orjson.loads(raw), Limits.of(settings))
        src = selection.source_of(keys, spec.selector, keys.rollout_sns(rid))
        return cls(client, keys, rid, me, spec, src)

    async def run(self, seconds: float, stopping: Callable[[], bool]) -> str:
        """Ticks for up to `seconds`: answers `done` (the rollout has ended and settled), `fenced` (another
        driver holds the lease) or `more` (hand over to a successor)."""
        until = time.monotonic() + seconds
        while time.monotonic() < until and not stopping():
            began = time.monotonic()
            state, done = await self.tick()
            if done:
                return "done"
            if state == "fenced":
                return "fenced"
            await asyncio.sleep(pause(self.behind, time.monotonic() - began))
        return "more"

    async def tick(self) -> tuple[str, bool]:
        k = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.rollout(self.rid))
            pipe.zcard(k.rollout_inflight(self.rid))
            record, in_flight = await pipe.execute()
        if not record:
            return "gone", True
        t = Tick(texts(record), int(in_flight), now_ms(), [])
        if t.record.get("pending") and not await self.write_pending(t.record["pending"]):
            return "fenced", False
        t.settled = await self.settle(t)
        return await self.decide(t)

    # --- 1. and 5.: commands -----------------------------------------------------------------------------
    async def write(self, batch: list[tuple[str, int]]) -> None:
        req = replace(self.spec.request, sns=tuple(sn for sn, _ in batch))
        ids = [cid for _, cid in batch]
        await command_calls.run_in_rounds(self.client, [c for _, c in create_calls(self.keys, req, ids, only_new=True)],
                                          len(self.keys.shards()))

    async def write_pending(self, pending: str) -> bool:
        batch = [(str(sn), int(cid)) for sn, cid in orjson.loads(pending)]
        await self.write(batch)
        return await calls.written(self.client, self.keys, self.rid, self.me)

    # --- 2.: settle --------------------------------------------------------------------------------------
    async def settle(self, t: Tick) -> list[tuple[str, str]]:
        k, rid = self.keys, self.rid
        offset = int(t.record.get("settleAt") or 0)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrange(k.rollout_inflight(rid), offset, offset + SETTLE_BATCH - 1, withscores=True)
            pipe.zrangebyscore(k.rollout_inflight(rid), "-inf", t.now, 0, SETTLE_BATCH, withscores=True)
            window, late = await pipe.execute()
        t.record["settleAt"] = str(offset + SETTLE_BATCH if len(window) == SETTLE_BATCH else 0)
        deadlines = {str(sn): float(at) for sn, at in [*window, *late]}
        if not deadlines:
            return []
        sns = list(deadlines)
        results = await self.client.hmget(k.rollout_results(rid), sns)
        ids = [parse_id(str(r or "").partition(" ")[0]) for r in results]
        async with self.client.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hmget(k.command(id_str(cid), partition(k, cid)) if cid else k.command("0", 0), "state", "reason")
            states = await pipe.execute()
        settled: list[tuple[str, str]] = []
        cancels: list[tuple[str, int, Outcome]] = []
        stopping = t.record.get("state") in STOPPING
        for sn, cid, (state, reason) in zip(sns, ids, states, strict=True):
            outcome = outcome_of(state, reason) if cid else Outcome.FAILED
            if outcome is not None:
                settled.append((sn, outcome.value))
            elif cid and deadlines[sn] <= t.now:
                cancels.append((sn, cid, Outcome.TIMED_OUT))
            elif cid and stopping and state == "0":
                cancels.append((sn, cid, Outcome.CANCELLED))
        if cancels:
            answers = await command_calls.run_many(self.client, [
                command_calls.cancel_call(k, partition(k, cid), id_str(cid)) for _, cid, _ in cancels])
            settled += [(sn, o.value) for (sn, _, o), a in zip(cancels, answers, strict=True) if str(a) != "finished"]
        return settled

    # --- 3. and 4.: decide, walk, commit ----------------------------------------------------------------
    def counts(self, t: Tick) -> dict[str, int]:
        out = {o.value: int(t.record.get(o.value) or 0) for o in Outcome if o is not Outcome.IN_FLIGHT}
        for _, outcome in t.settled:
            out[outcome] += 1
        return out

    async def decide(self, t: Tick) -> tuple[str, bool]:
        spec, rec = self.spec, t.record
        counts = self.counts(t)
        failures = counts[Outcome.FAILED] + counts[Outcome.TIMED_OUT]
        in_flight = max(0, t.in_flight - len(t.settled))
        state = rec.get("state", "")
        rate = rate_now(spec, counts[Outcome.SUCCEEDED])
        allowance = refill(float(rec.get("allowance") or 0), t.now - int(rec.get("tickAt") or t.now), rate)
        fields: dict[str, Any] = {"rate": rate, "tickAt": t.now, "settleAt": rec["settleAt"]}
        ending = ""
        dispatch: list[tuple[str, str, int]] = []
        if state in ACTIVE:
            reason = abort_reason(spec.abort, counts[Outcome.SUCCEEDED], failures)
            if reason is not None:
                ending, fields["abortReason"] = RolloutState.ABORTED.value, reason
        if state in (RolloutState.QUEUED, RolloutState.RUNNING) and not ending:
            ending, dispatch = await self.advance(rec, fields, t.now, in_flight, allowance, failures)
            allowance -= len(dispatch)
        fields["allowance"] = allowance
        self.behind = len(dispatch) == DISPATCH_MAX
        new_state, done, sent = await calls.commit(self.client, self.keys, self.rid, self.me, t.now, LEASE_MS,
                                                   ending, t.settled, dispatch, fields)
        if sent:
            ids = {sn: int(cid) for sn, cid, _ in dispatch}
            await self.write([(sn, ids[sn]) for sn in sent])
            await calls.written(self.client, self.keys, self.rid, self.me)
        return new_state, done

    async def advance(self, rec: dict[str, str], fields: dict[str, Any], now: int, in_flight: int,
                      allowance: float, failures: int) -> tuple[str, list[tuple[str, str, int]]]:
        """The walk's step: the ending (the walk is through and nothing is in flight) or the devices to dispatch
        to now; `fields` gets the walk's new position."""
        cursor, walk_end = rec.get("cursor", ""), rec.get("walkEnd") == "1"
        if walk_end:
            if in_flight == 0:
                return (RolloutState.FAILED if failures else RolloutState.SUCCEEDED).value, []
            if now - int(rec.get("passEndedAt") or 0) < RESCAN_MS:
                return "", []
            cursor, walk_end = "", False
            fields.update({"cursor": "", "walkEnd": 0, "pass": int(rec.get("pass") or 0) + 1})
        want = min(int(allowance), self.spec.max_in_flight - in_flight, DISPATCH_MAX)
        if want <= 0:
            return "", []
        sns, cursor, walk_end = await self.walk(cursor, want)
        fields["cursor"] = cursor
        if walk_end:
            fields.update({"walkEnd": 1, "passEndedAt": now})
            if int(rec.get("pass") or 0) == 0:  # the first walk is through: `matched` is exact now
                fields["matched"] = int(rec.get("dispatched") or 0) + len(sns)
        if not sns:
            return "", []
        ids = await CommandStore(self.client, self.keys).new_ids(sns)
        deadline = now + self.spec.timeout * 1000
        return "", [(sn, id_str(cid), deadline) for sn, cid in zip(sns, ids, strict=True)]

    async def walk(self, cursor: str, want: int) -> tuple[list[str], str, bool]:
        """Up to `want` devices the selector matches now and the rollout has not dispatched to, from `cursor`;
        answers them, the new cursor, and whether the index has been walked to its end."""
        found: list[str] = []
        examined = 0
        after: str | None = cursor or None
        while len(found) < want and examined < EXAMINE_MAX:
            batch = await selection.candidates(self.client, self.src, after, min(selection.BATCH, EXAMINE_MAX))
            if not batch:
                return found, after or "", True
            matches = await selection.matching(self.client, self.keys, self.spec.selector, self.src, batch)
            done_before = await self.client.zmscore(self.keys.rollout_execs(self.rid), batch)
            for sn, ok, seen in zip(batch, matches, done_before, strict=True):
                after = sn
                examined += 1
                if ok and seen is None:
                    found.append(sn)
                    if len(found) == want:
                        break
        return found, after or "", False
