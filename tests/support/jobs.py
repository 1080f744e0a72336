"""RQ in the tests' own process: a burst worker of the product's class (adapter/jobs/rq_worker.py)."""

from __future__ import annotations

from rq import Queue

from adapter.jobs import entry as jobs
from adapter.jobs.rq_worker import RidingWorker
from adapter.settings import Settings
from adapter.store.connections import rq_redis
from adapter.store.keys import Keys


def burst(queue: Queue, *, with_scheduler: bool = False) -> None:
    """Run `queue`'s jobs until it is empty. The product's worker class, not rq's SimpleWorker: rq's ends with its
    pubsub thread's stop, which on redis-py 8.2 can wait a whole 60 s round (RidingWorker.subscribe)."""
    RidingWorker([queue], connection=queue.connection).work(burst=True, with_scheduler=with_scheduler)


def work(settings: Settings) -> None:
    """The default queue's jobs under `settings` (what `adapter worker` would run), until it is empty."""
    jobs.configure(settings)
    burst(Queue(Keys.of(settings).queue("default"), connection=rq_redis(settings)))
