"""Bulk command creation as an RQ job with progress (docs/commands.md "Large requests").

A POST whose `to` lists more than `command_job_threshold` devices allocates every id up front (the same one
INCRBY as a small request), so it answers the seed's `to` list at once, plus `job`: the id of the RQ job
that writes the records, `CREATE_CHUNK` (1,000) at a time. `GET /iot/api/v1/jobs?id=` shows its progress.
A command is readable once its chunk is written; until then its id answers 404.

The chunks are per partition (adapter/commands/records.py `create_calls`, always in the same order). On one Redis
each chunk and its progress step are one MULTI/EXEC, so a retried job (RQ `Retry`, after a worker died) goes on
from the first chunk not written and never rewrites a command that may have been sent already (so does a job stopped
between two chunks because its worker is stopping: adapter/jobs/shutdown.py). On Redis Cluster
a chunk (its partition's slot) and the progress (another slot) cannot share a MULTI: the chunk is written with
`onlyNew` (an id written already is skipped), then its progress step, so a retry that repeats the chunk whose
step was lost rewrites nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue, Retry

from adapter.commands import calls
from adapter.commands.records import CommandStore, create_calls, targets
from adapter.commands.rules import CommandRequest
from adapter.jobs import progress as job_progress
from adapter.jobs import shutdown
from adapter.jobs.chains import id_part
from adapter.store.connections import Services, rq_connection
from adapter.store.keys import Keys
from adapter.store.outage import never

QUEUE = "default"
KIND = "commands"
ENTRY = "adapter.jobs.entry.create_commands"


def job_id(keys: Keys, first_id: int) -> str:
    """Command ids are unique, so the first one names the job."""
    return f"{id_part(keys.prefix)}-commands-{first_id}"


def _enqueue(conn: redis.Redis, keys: Keys, jid: str, req: CommandRequest, ids: list[int], ttl: int) -> None:
    Queue(keys.queue(QUEUE), connection=conn).enqueue(
        ENTRY, req, ids, job_id=jid, job_timeout=900, result_ttl=ttl, failure_ttl=ttl,
        retry=Retry(max=3, interval=[5, 30, 120]), description=f"create {len(ids)} commands")


async def create(svc: Services, req: CommandRequest) -> dict[str, Any]:
    """The seed's answer (`to`) plus `job`; the records are written by the job."""
    ids = await CommandStore(svc.redis, svc.keys).new_ids(req.sns)
    jid = job_id(svc.keys, ids[0])
    ttl = svc.settings.job_progress_ttl
    await job_progress.create(svc.redis, svc.keys, jid, KIND, len(ids), ttl)
    await asyncio.to_thread(_enqueue, rq_connection(svc), svc.keys, jid, req, ids, ttl)
    return {"to": targets(req, ids), "job": jid}


def write(conn: redis.Redis, keys: Keys, jid: str, req: CommandRequest, ids: list[int], ttl: int,
          stopping: Callable[[], bool] = never) -> int:
    """The job's work: every chunk not written yet, each with its progress step; answers how many it wrote. Raises
    `shutdown.Stopped` between two chunks once `stopping()` says so (RQ retries the job: it goes on from `done`)."""
    first = job_progress.done_so_far(conn, keys, jid)
    job_progress.step(conn, keys, jid, ttl, state=job_progress.JobState.STARTED)
    done = 0
    for count, call in create_calls(keys, req, ids, only_new=keys.cluster):
        done += count
        if done <= first:
            continue  # written by an earlier try
        shutdown.check(stopping)
        if keys.cluster:
            calls.run_many_sync(conn, [call])
            job_progress.step(conn, keys, jid, ttl, done=done)
            continue
        with conn.pipeline(transaction=True) as pipe:
            calls.queue(pipe, [call], load=True)
            job_progress.queue_step(pipe, keys, jid, ttl, done=done)
            pipe.execute()
    job_progress.step(conn, keys, jid, ttl, state=job_progress.JobState.FINISHED)
    return len(ids) - first
