"""Replaying all of a target's dead letters as an RQ job with progress, when it has more than
`replay_job_threshold` (docs/delivery.md "What RQ runs"): the POST answers at once with the job's id, a worker
moves the letters back `dead_letters.REPLAY_BATCH` at a time, and `GET /iot/api/v1/jobs?id=` shows how far it
got. Each batch is atomic, so a job retried after a worker died moves no letter twice."""

from __future__ import annotations

import asyncio
import time

import redis
from rq import Queue

from adapter.delivery import dead_letters
from adapter.jobs import progress as job_progress
from adapter.jobs.chains import id_part
from adapter.settings import Settings
from adapter.store.connections import Services, async_redis, rq_connection
from adapter.store.keys import Keys

KIND = "replay"
QUEUE = "default"
ENTRY = "adapter.jobs.entry.replay_dead"


def job_id(keys: Keys, target: str, now_ms: int) -> str:
    """RQ job ids allow letters, digits, `_` and `-`: `iot-replay-callback-1-<ms>`."""
    return f"{id_part(keys.prefix)}-replay-{target.replace(':', '-')}-{now_ms}"


def _enqueue(conn: redis.Redis, keys: Keys, jid: str, target: str, ttl: int) -> None:
    Queue(keys.queue(QUEUE), connection=conn).enqueue(ENTRY, target, job_id=jid, job_timeout=3600,
                                                      result_ttl=ttl, failure_ttl=ttl)


async def start(svc: Services, target: str, total: int) -> str:
    jid = job_id(svc.keys, target, int(time.time() * 1000))
    ttl = svc.settings.job_progress_ttl
    await job_progress.create(svc.redis, svc.keys, jid, KIND, total, ttl)
    await asyncio.to_thread(_enqueue, rq_connection(svc), svc.keys, jid, target, ttl)
    return jid


def run(settings: Settings, conn: redis.Redis, jid: str, target: str) -> int:
    """The job's work: every dead letter of `target` back onto the streams; answers how many moved."""
    keys, ttl = Keys.of(settings), settings.job_progress_ttl
    job_progress.step(conn, keys, jid, ttl, state=job_progress.JobState.STARTED)

    async def replay() -> int:
        client = async_redis(settings)
        try:
            async def progress(done: dead_letters.Replayed) -> None:
                await asyncio.to_thread(job_progress.step, conn, keys, jid, ttl,
                                        done=done.moved + done.skipped + done.missing)

            done = await dead_letters.replay(client, keys, target, None, settings.delivery_partitions,
                                             settings.delivery_stream_maxlen, progress=progress)
            return done.moved
        finally:
            await client.aclose()

    try:
        moved = asyncio.run(replay())
    except Exception as exc:
        job_progress.fail(conn, keys, jid, ttl, exc)
        raise
    job_progress.step(conn, keys, jid, ttl, state=job_progress.JobState.FINISHED)
    return moved
