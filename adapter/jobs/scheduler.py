"""RQ's scheduler (rq.scheduler.RQScheduler: puts jobs scheduled with `enqueue_in` on their queue when due, which
is how the periodic chains go on) in a thread of the worker process, riding through Redis trouble.

rq 2.12's `work(with_scheduler=True)` forks a scheduler process whose loop ends on the first Redis error; the worker
starts a new one only at its next registry upkeep (every 10 minutes), so after a 20 s outage the periodic jobs came
back minutes later. It also forks while the delivery pump and the command runner threads run, which the worker
avoids for jobs (adapter/worker.py). Here the same scheduler's steps run in a thread, as its own loop runs them:
every `interval` (1 s) refresh or take its locks (one scheduler per queue across workers; rq takes a lock another
scheduler held only after its fallback period) and enqueue the due jobs. A step that fails on Redis trouble is tried
again every `outage.PAUSE` s, so scheduled jobs move again within about that of Redis answering; a lock that expired
meanwhile is taken again by the next heartbeat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import redis
from rq import Queue
from rq.scheduler import RQScheduler

from adapter.store import faults, outage

log = logging.getLogger("adapter.jobs.scheduler")


def tick(scheduler: RQScheduler) -> None:
    """One round of RQScheduler.work's loop."""
    if scheduler.should_reacquire_locks:
        scheduler.acquire_locks()
    scheduler.heartbeat()
    scheduler.enqueue_scheduled_jobs()


def run_scheduler(queues: Sequence[Queue], connection: redis.Redis, stop: threading.Event) -> None:
    """Until `stop` is set; then its locks are released for another worker's scheduler."""
    scheduler = RQScheduler(list(queues), connection=connection)
    outage.ride(scheduler.register_birth, what="rq scheduler", stopping=stop.is_set, logger=log)
    try:
        while not stop.is_set():
            outage.ride(lambda: tick(scheduler), what="rq scheduler", stopping=stop.is_set, logger=log)
            stop.wait(scheduler.interval)
    finally:
        try:
            scheduler.stop()
        except Exception as exc:  # its locks and key expire by themselves
            if not faults.trouble(exc):
                raise
