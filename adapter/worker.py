"""`adapter worker`: one RQ worker, scheduler on, on every queue the service uses."""

from __future__ import annotations

from rq import Queue, Worker

from adapter.keys import Keys
from adapter.services import check_redis, sync_redis
from adapter.settings import Settings

QUEUES = ("default",)


def queues(settings: Settings) -> list[Queue]:
    conn = sync_redis(settings, decode=False)
    keys = Keys(settings.key_prefix)
    return [Queue(keys.queue(name), connection=conn) for name in QUEUES]


def run(settings: Settings, *, burst: bool = False) -> int:
    check_redis(settings)
    qs = queues(settings)
    worker = Worker(qs, connection=qs[0].connection)
    worker.work(burst=burst, with_scheduler=True)
    return 0
