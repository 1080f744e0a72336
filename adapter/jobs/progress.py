"""The progress of one long RQ job (bulk command creation; dead-letter replay can use it too):
job id → {state, done, total}, kept in `Keys.job_progress(id)` for `job_progress_ttl` seconds after its last
change, read by `GET /iot/api/v1/jobs?id=`.

States: `queued` (written when the job is enqueued), `started`, `finished`, `failed` (with `error`). While RQ
has retries left, a `failed` job starts again and goes on from `done`. A worker killed in the middle of a job
leaves `started` until RQ notices (its heartbeat expires) and retries it.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

import redis

from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis


class JobState(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"


STATES = tuple(s.value for s in JobState)


def initial(kind: str, total: int) -> dict[Any, str | int]:
    now = int(time.time())
    return {"kind": kind, "state": "queued", "done": 0, "total": total, "error": "", "created": now,
            "updated": now}


async def create(r: AsyncRedis, keys: Keys, job_id: str, kind: str, total: int, ttl: int) -> None:
    key = keys.job_progress(job_id)
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=initial(kind, total))
        pipe.expire(key, ttl)
        await pipe.execute()


def queue_step(pipe: redis.client.Pipeline, keys: Keys, job_id: str, ttl: int, *, done: int | None = None,
               state: str | None = None, error: str | None = None) -> None:
    """Queue a progress change on `pipe` (so that it can share a transaction with the work it counts)."""
    key = keys.job_progress(job_id)
    fields: dict[Any, str | int] = {"updated": int(time.time())}
    if done is not None:
        fields["done"] = done
    if state is not None:
        fields["state"] = state
    if error is not None:
        fields["error"] = error[:500]
    pipe.hset(key, mapping=fields)
    pipe.expire(key, ttl)


def step(conn: redis.Redis, keys: Keys, job_id: str, ttl: int, *, done: int | None = None,
         state: str | None = None, error: str | None = None) -> None:
    with conn.pipeline(transaction=True) as pipe:
        queue_step(pipe, keys, job_id, ttl, done=done, state=state, error=error)
        pipe.execute()


def fail(conn: redis.Redis, keys: Keys, job_id: str, ttl: int, exc: BaseException) -> None:
    """The job failed with `exc`: its state and the error, for the progress read."""
    step(conn, keys, job_id, ttl, state=JobState.FAILED, error=f"{type(exc).__name__}: {exc}")


def done_so_far(conn: redis.Redis, keys: Keys, job_id: str) -> int:
    raw = conn.hget(keys.job_progress(job_id), "done")
    return int(raw) if raw else 0


async def read(r: AsyncRedis, keys: Keys, job_id: str) -> dict[str, Any] | None:
    record = await r.hgetall(keys.job_progress(job_id))
    if not record:
        return None
    f = {str(k): str(v) for k, v in record.items()}
    return {"id": job_id, "kind": f.get("kind", ""), "state": f.get("state", ""),
            "done": int(f.get("done") or 0), "total": int(f.get("total") or 0), "error": f.get("error", ""),
            "createTime": int(f.get("created") or 0), "updateTime": int(f.get("updated") or 0)}
