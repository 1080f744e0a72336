"""Rollouts in Redis as the API reads and changes them: create, progress, a page of rollouts, the per-device
executions, pause/resume/cancel (rollout.lua `control`). The driver's side is adapter/rollouts/driver.py.

Progress is one HGETALL and one ZCARD, whatever the rollout's size: the driver keeps the counts in the hash.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from adapter.commands.ids import parse_id
from adapter.errors import AppError, not_found
from adapter.rollouts import calls
from adapter.rollouts.spec import Outcome, Spec, spec_json
from adapter.store.connections import texts
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis, as_int

SNS_CHUNK = 10_000
COUNTS = ("dispatched", *(o.value for o in Outcome if o is not Outcome.IN_FLIGHT))


def view(rid: int, record: dict[str, str], in_flight: int) -> dict[str, Any]:
    """A rollout's record and progress as the API shows it."""
    counts = {name: as_int(record.get(name)) for name in COUNTS}
    counts["inFlight"] = in_flight
    counts["matched"] = as_int(record.get("matched"))
    first, last = as_int(record.get("firstDispatch")), as_int(record.get("lastDispatch"))
    achieved = (counts["dispatched"] - 1) * 60_000 / (last - first) if counts["dispatched"] > 1 and last > first \
        else 0.0
    rate = float(record.get("rate") or 0)
    remaining = max(0, counts["matched"] - counts["dispatched"])
    eta = round(remaining * 60 / rate) if rate > 0 and record.get("state") == "running" else None
    return {"id": rid, "name": record.get("name", ""), "state": record.get("state", ""),
            "spec": orjson.loads(record.get("spec") or "{}"), "counts": counts,
            "rate": {"perMinute": rate, "achieved": round(achieved, 2)}, "etaSeconds": eta,
            "abortReason": record.get("abortReason", ""), "createTime": as_int(record.get("created")),
            "startTime": as_int(record.get("started")), "finishTime": as_int(record.get("finished")),
            "updateTime": as_int(record.get("updated"))}


def rollout_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise AppError("invalid_params", "id: must be a rollout id (a positive integer)")
    return int(raw)


class RolloutStore:
    def __init__(self, client: AsyncRedis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def create(self, spec: Spec, matched: int) -> int:
        """A queued rollout (its driver is started by the caller); answers its id."""
        rid = int(await self.redis.incr(self.keys.rollout_seq()))
        k = self.keys
        sns = spec.selector.sns or ()
        for start in range(0, len(sns), SNS_CHUNK):
            await self.redis.zadd(k.rollout_sns(rid), dict.fromkeys(sns[start:start + SNS_CHUNK], 0))
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:  # the hash first: the index names only real ones
            pipe.hset(k.rollout(rid), mapping={
                "name": spec.name, "state": "queued", "spec": orjson.dumps(spec_json(spec)), "created": now,
                "updated": now, "matched": matched, "dispatched": 0, "cursor": "", "pass": 0, "allowance": 1,
                "rate": 0})
            pipe.zadd(k.rollouts(), {str(rid): rid})
            pipe.sadd(k.rollouts_active(), str(rid))
            await pipe.execute()
        return rid

    async def get(self, rid: int) -> dict[str, Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.rollout(rid))
            pipe.zcard(self.keys.rollout_inflight(rid))
            record, in_flight = await pipe.execute()
        if not record:
            raise not_found(f"no rollout {rid}")
        return view(rid, texts(record), int(in_flight))

    async def page(self, page: int, limit: int) -> dict[str, Any]:
        """Newest first."""
        start = (page - 1) * limit
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.rollouts())
            pipe.zrevrange(self.keys.rollouts(), start, start + limit - 1)
            total, ids = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.hgetall(self.keys.rollout(rid))
                pipe.zcard(self.keys.rollout_inflight(rid))
            replies = await pipe.execute() if ids else []
        items = [view(int(rid), texts(replies[2 * i]), int(replies[2 * i + 1]))
                 for i, rid in enumerate(ids) if replies[2 * i]]
        return {"total": int(total), "count": len(items), "page": page, "limit": limit, "list": items}

    async def executions(self, rid: int, page: int, limit: int) -> dict[str, Any]:
        """The devices dispatched to, in dispatch order, each with its command id and outcome."""
        if not await self.redis.exists(self.keys.rollout(rid)):
            raise not_found(f"no rollout {rid}")
        start = (page - 1) * limit
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.rollout_execs(rid))
            pipe.zrange(self.keys.rollout_execs(rid), start, start + limit - 1, withscores=True)
            total, found = await pipe.execute()
        sns = [str(sn) for sn, _ in found]
        results = await self.redis.hmget(self.keys.rollout_results(rid), sns) if sns else []
        items = []
        for (sn, at), result in zip(found, results, strict=True):
            id_text, outcome, settled = ([*str(result or "").split(" "), "", ""])[:3]
            cid = parse_id(id_text)
            items.append({"sn": str(sn), "id": cid or 0, "idStr": id_text, "dispatchTime": int(at),
                          "outcome": outcome, "finishTime": as_int(settled)})
        return {"total": int(total), "count": len(items), "page": page, "limit": limit, "list": items}

    async def control(self, rid: int, action: str) -> dict[str, Any]:
        outcome = await calls.control(self.redis, self.keys, rid, action)
        if outcome == "not_found":
            raise not_found(f"no rollout {rid}")
        if outcome.startswith("conflict:"):
            raise AppError("conflict", f"rollout {rid} is {outcome.partition(':')[2]}: it cannot {action}")
        return await self.get(rid)
