"""Periodic RQ jobs: one chain each however many workers start, a run schedules the next, a lost chain is
restarted once (adapter/jobs/chains.py)."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry, ScheduledJobRegistry

from adapter.jobs import entry as jobs
from adapter.settings import Settings
from adapter.store.connections import rq_redis
from adapter.store.keys import Keys
from tests.support.jobs import burst


@pytest.fixture
def cfg(settings: Settings) -> Settings:
    # reconcile fails fast (EMQX URL answers nothing): a failed run must still schedule the next
    return settings.with_overrides(reconcile_interval=300, retention_interval=3600, emqx_timeout=0.5)


def queue_of(cfg: Settings) -> Queue:
    return Queue(Keys.of(cfg).queue("default"), connection=rq_redis(cfg))


def scheduled(cfg: Settings) -> list[str]:
    return sorted(ScheduledJobRegistry(queue=queue_of(cfg)).get_job_ids())


def start_workers_at_once(cfg: Settings, n: int) -> list[list[str]]:
    """`n` workers starting together, each with its own connection, each making sure of the chains."""
    barrier = threading.Barrier(n)
    started: list[list[str]] = [[] for _ in range(n)]

    def one(i: int) -> None:
        conn = rq_redis(cfg)
        barrier.wait()
        started[i] = jobs.ensure_chains(cfg, conn)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return started


def chain_ids(cfg: Settings) -> list[str]:
    """The chains' current runs: beside RQ's job records, on RQ's Redis."""
    keys = Keys.of(cfg)
    with rq_redis(cfg) as r:
        return [(r.get(keys.job_chain(name)) or b"").decode() for name in ("reconcile", "retention")]


def test_many_workers_start_one_chain_per_periodic_job(cfg: Settings, redis_db: redis.Redis) -> None:
    started = start_workers_at_once(cfg, 4)
    assert sorted(i for ids in started for i in ids) == scheduled(cfg)
    assert len(scheduled(cfg)) == 2
    assert sorted(chain_ids(cfg)) == scheduled(cfg)
    assert start_workers_at_once(cfg, 2) == [[], []]  # alive chains are left alone
    assert len(scheduled(cfg)) == 2


def test_each_run_schedules_exactly_the_next(cfg: Settings, redis_db: redis.Redis) -> None:
    first = jobs.ensure_chains(cfg, rq_redis(cfg))
    jobs.configure(cfg)
    queue = queue_of(cfg)
    # two workers, one after the other: the due runs go once, each schedules one successor
    for _ in range(2):
        burst(queue, with_scheduler=True)
    assert sorted(FinishedJobRegistry(queue=queue).get_job_ids()) == sorted(first[-1:])  # retention finished
    nexts = scheduled(cfg)
    assert len(nexts) == 2 and not set(nexts) & set(first)
    assert sorted(chain_ids(cfg)) == nexts
    runs = redis_db.hgetall(Keys.of(cfg).metrics())
    assert runs['jobs_runs_total{job="retention",result="ok"}'] == "1"
    assert runs['jobs_runs_total{job="reconcile",result="failed"}'] == "1"
    due_in = ScheduledJobRegistry(queue=queue).get_scheduled_time(nexts[0]).timestamp()
    assert due_in > time.time() + 250  # one interval later, not at once


def test_a_lost_chain_is_restarted_once(cfg: Settings, redis_db: redis.Redis) -> None:
    keys = Keys.of(cfg)
    with rq_redis(cfg) as r:
        r.set(keys.job_chain("reconcile"), "iot-reconcile-1000-0badc0de")  # its run vanished long ago
        r.set(keys.job_chain("retention"), "iot-retention-1000-0badc0de")
    started = start_workers_at_once(cfg, 3)
    assert sorted(i for ids in started for i in ids) == scheduled(cfg)
    assert len(scheduled(cfg)) == 2


def test_a_run_is_scheduled_in_one_call(cfg: Settings, redis_db: redis.Redis) -> None:
    """Another worker's scheduler may read the registry at any moment, and a job id it finds there without its job
    it drops for good (rq's RQScheduler.enqueue_scheduled_jobs): the job and its registry entry are written in one
    call (rq 2.12's `enqueue_in` added the entry first, alone; a chain stood still until its guard)."""
    sent: list[str] = []
    with rq_redis(cfg) as conn:
        send = conn.execute_command

        def spy(*args: object, **options: object) -> object:
            sent.append(str(args[0]).upper())
            return send(*args, **options)

        conn.execute_command = spy  # type: ignore[method-assign]
        started = jobs.ensure_chains(cfg, conn)
        assert len(started) == 2 and all(Job.exists(job_id, connection=conn) for job_id in started)
    assert "ZADD" not in sent and "HSET" not in sent, sent  # no step of its own: inside one script call
    assert sorted(started) == scheduled(cfg)
