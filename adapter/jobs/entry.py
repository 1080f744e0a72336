"""RQ entry points (docs/delivery.md "What RQ runs"): thin, each calling one domain module.

- `reconcile`, every `reconcile_interval` s: presence against EMQX's client list (adapter/devices/reconcile.py);
- `retention`, every `retention_interval` s: forget clients gone for `device_retention_days`
  (adapter/devices/retention.py);
- `create_commands`: a large POST /remotectl/commands (adapter/commands/bulk.py);
- `replay_dead`: replaying all of a target's dead letters when there are many (adapter/delivery/replay.py);
- `drive_rollout`: one slice of a rollout's driver (adapter/rollouts/chain.py).

The periodic ones run as one chain each (adapter/jobs/chains.py), started by the worker's guard (`guard_chains`) at
once and then every `GUARD_EVERY` s; the guard waits out Redis trouble (adapter/store/outage.py). Jobs read the worker
process's settings (`configure`), never settings pickled into the job: a restart with new settings applies to the
chains already scheduled, and no secret is stored in Redis. Long jobs end early between two batches once the
worker is stopping (adapter/jobs/shutdown.py): a periodic run says `stopped` in its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from rq import Queue, get_current_job

from adapter.broker.client import EmqxClient
from adapter.commands import bulk as command_bulk
from adapter.commands.rules import CommandRequest
from adapter.delivery import replay as dead_replay
from adapter.devices import reconcile as presence_reconcile
from adapter.devices import retention as client_retention
from adapter.jobs import chains as periodic
from adapter.jobs import progress as job_progress
from adapter.jobs import shutdown
from adapter.jobs.chains import Periodic
from adapter.rollouts import chain as rollout_chain
from adapter.rollouts import retention as rollout_retention
from adapter.settings import Settings
from adapter.store import outage
from adapter.store.connections import async_redis, rq_redis, sync_redis
from adapter.store.keys import Keys

QUEUE = "default"
GUARD_EVERY = 60.0
log = logging.getLogger("adapter.jobs.entry")
_settings: Settings | None = None


def configure(settings: Settings) -> None:
    global _settings
    _settings = settings


def current_settings() -> Settings:
    return _settings if _settings is not None else Settings.from_env()


def periodics(settings: Settings) -> dict[str, Periodic]:
    return {"reconcile": Periodic("reconcile", "adapter.jobs.entry.reconcile", settings.reconcile_interval),
            "retention": Periodic("retention", "adapter.jobs.entry.retention", settings.retention_interval)}


def ensure_chains(settings: Settings, conn: redis.Redis) -> list[str]:
    """Start every periodic chain that is not alive; the ids of the runs it scheduled."""
    keys = Keys.of(settings)
    queue = Queue(keys.queue(QUEUE), connection=conn)
    started = [periodic.ensure(queue, keys, p) for p in periodics(settings).values()]
    return [job_id for job_id in started if job_id]


def guard_chains(settings: Settings, conn: redis.Redis, stop: threading.Event) -> None:
    """The worker's guard: starts the chains at once, then every GUARD_EVERY s restarts one whose run was lost (a
    worker killed in the middle of it, a run whose successor Redis refused). Redis trouble is waited out, tried
    again every outage.PAUSE s; anything else is a bug and ends the guard (the worker then exits)."""
    while True:
        outage.ride(lambda: ensure_chains(settings, conn), what="periodic jobs", stopping=stop.is_set, logger=log)
        if stop.wait(GUARD_EVERY):
            return


def count(conn: redis.Redis, settings: Settings, fields: dict[str, int]) -> None:
    key = Keys.of(settings).metrics()
    with conn.pipeline(transaction=False) as pipe:
        for name, n in fields.items():
            pipe.hincrby(key, name, n)
        pipe.execute()


@contextmanager
def chained(name: str) -> Iterator[Settings]:
    """Run one step of periodic job `name`, then schedule the next, whatever the step's outcome."""
    settings = current_settings()
    job = get_current_job()
    ok = False
    try:
        yield settings
        ok = True
    finally:
        if job is not None:
            keys = Keys.of(settings)
            periodic.follow(Queue(job.origin, connection=job.connection), keys, periodics(settings)[name], job.id)
        with sync_redis(settings) as conn:
            count(conn, settings, {f'jobs_runs_total{{job="{name}",result="{"ok" if ok else "failed"}"}}': 1})


def _stopped(name: str, stopped: bool) -> dict[str, int]:
    """A run that ended early because the worker is stopping says so in its result (and the log)."""
    if not stopped:
        return {}
    log.warning("%s: the worker is stopping: this run ended early (the next one goes on)", name)
    return {"stopped": 1}


def _run(work: Callable[[], Any]) -> Any:
    return asyncio.run(work())


def reconcile() -> dict[str, Any]:
    with chained("reconcile") as settings:
        async def go() -> presence_reconcile.Outcome:
            r = async_redis(settings)
            emqx = EmqxClient.from_settings(settings)
            try:
                return await presence_reconcile.reconcile(r, emqx, Keys.of(settings),
                                                          settings.reconcile_page_size, shutdown.requested,
                                                          progress=job_meta_progress())
            finally:
                await emqx.aclose()
                await r.aclose()

        outcome: presence_reconcile.Outcome = _run(go)
        with sync_redis(settings) as conn:
            count(conn, settings, outcome.metrics())
        return {"checked": outcome.checked, "online": outcome.online, "offline": outcome.offline,
                "raced": outcome.raced, **_stopped("reconcile", outcome.stopped)}


def job_meta_progress(every: float = 1.0) -> Callable[[int, int], None]:
    """A reconciliation's progress in its RQ job's meta (`progress`: done, total; rq's Job.meta, shown by RQ's
    tools), at most every `every` s and at the end; nothing outside an RQ job."""
    job = get_current_job()
    told = [0.0]

    def tell(done: int, total: int) -> None:
        now = time.monotonic()
        if job is None or (now - told[0] < every and done < total):
            return
        told[0] = now
        job.meta["progress"] = {"done": done, "total": total}
        with contextlib.suppress(redis.exceptions.RedisError):  # a progress note is not worth failing the run
            job.save_meta()
        log.info("reconcile: %d of %d corrections", done, total)

    return tell


def retention() -> dict[str, int]:
    with chained("retention") as settings, sync_redis(settings) as conn:
        removed = client_retention.run(conn, Keys.of(settings), settings.device_retention_days,
                                       settings.retention_batch, stopping=shutdown.requested)
        rollouts = rollout_retention.run(conn, Keys.of(settings),
                                         client_retention.cutoff_ms(settings.rollout_retention_days))
        count(conn, settings, {**removed.metrics(), 'retention_removed_total{what="rollout"}': rollouts})
        return {"devices": removed.devices, "clients": removed.clients, "examined": removed.examined,
                "rollouts": rollouts, **_stopped("retention", removed.stopped)}


def create_commands(req: CommandRequest, ids: list[int]) -> int:
    settings = current_settings()
    job = get_current_job()
    jid = job.id if job is not None else command_bulk.job_id(Keys.of(settings), ids[0])
    keys, ttl = Keys.of(settings), settings.job_progress_ttl
    with sync_redis(settings) as conn:
        try:
            return command_bulk.write(conn, keys, jid, req, ids, ttl, stopping=shutdown.requested)
        except Exception as exc:
            job_progress.fail(conn, keys, jid, ttl, exc)
            raise


def replay_dead(target: str) -> int:
    settings = current_settings()
    job = get_current_job()
    jid = job.id if job is not None else dead_replay.job_id(Keys.of(settings), target, 0)
    with sync_redis(settings) as conn:
        return dead_replay.run(settings, conn, jid, target)


def drive_rollout(rid: int) -> str:
    settings = current_settings()
    job = get_current_job()
    me = job.id if job is not None else rollout_chain.new_job_id(Keys.of(settings), rid)

    async def go() -> str:
        r, rq = async_redis(settings), rq_redis(settings)
        try:
            return await rollout_chain.drive(r, rq, Keys.of(settings), settings, rid, me, shutdown.requested)
        finally:
            await r.aclose()
            rq.close()

    result: str = _run(go)
    return result
