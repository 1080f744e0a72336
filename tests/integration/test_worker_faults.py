"""A real `adapter worker` rides through every Redis fault (docs/reliability.md, ../shared/FAULTS.md) on a
redis-server of the test's own: crash and restart on its AOF, CLIENT PAUSE, OOM, READONLY (a demotion), MISCONF, BUSY,
LOADING, with a job that ends while the fault lasts (RQ's bookkeeping of it fails). It does not exit, and once Redis
takes writes again its RQ worker runs a job, its RQ scheduler moves a scheduled one, and its command runner publishes
a command, each within a generous deadline; a SIGTERM then stops it with status 0 (its log has no traceback: nothing
died)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import redis.asyncio
from rq import Queue
from rq.job import Job, JobStatus

from adapter.commands.records import CommandStore
from adapter.commands.rules import Limits, parse_request
from adapter.jobs import entry as jobs
from adapter.settings import Settings
from adapter.store.connections import rq_redis
from adapter.store.keys import Keys
from tests.support.fake_emqx import FakeEmqx
from tests.support.processes import worker_process
from tests.support.redis_faults import FAULTS, FaultyRedis, fault, fault_server, faulty_redis
from tests.support.servers import serve, wait_for

pytestmark = pytest.mark.single_redis  # each test breaks a redis-server of its own
RESUME_S = 10.0  # the worker resumes within about outage.PAUSE; generous for a loaded machine
KEYS = Keys("iot")


def worker(redis_url: str, emqx_url: str, log_path: Path,
           more: dict[str, str] | None = None) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return worker_process(redis_url, emqx_url, log_path, {"ADAPTER_COMMAND_RETRY_SCHEDULE": "0.2s"} | (more or {}))


def command_to(server: FaultyRedis, sn: str) -> None:
    """A command for `sn`, to be published at once. Sync, with a loop of its own: the test drives a worker process
    and waits on it with blocking polls."""

    async def go() -> None:
        client = redis.asyncio.Redis(port=server.port, decode_responses=True)
        try:
            req = parse_request({"to": [{"sn": sn}], "command": "sh"}, Limits.of(Settings()))
            await CommandStore(client, KEYS).create(req)
        finally:
            await client.aclose()

    asyncio.run(go())


def goes_on(server: FaultyRedis, emqx: FakeEmqx, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """A job, a scheduled job and a command all go through, each within RESUME_S."""
    with redis.Redis(port=server.port) as conn:
        queue = Queue(KEYS.queue("default"), connection=conn)
        tag = uuid.uuid4().hex[:8]
        now = queue.enqueue("builtins.len", tag)
        later = queue.enqueue_in(timedelta(seconds=1), "builtins.len", tag * 2)
        sn = f"SN-{tag}"
        command_to(server, sn)
        done = wait_for(lambda: _finished(conn, now.id) or proc.poll() is not None, timeout=RESUME_S,
                        what="the RQ worker to run a job")
        assert proc.poll() is None and done, log_path.read_text()[-3000:]
        wait_for(lambda: any(m["topic"] == f"dma/cmd/{sn}" for m in emqx.published), timeout=RESUME_S,
                 what="the command runner to publish")
        wait_for(lambda: _finished(conn, later.id), timeout=RESUME_S + 1, what="the RQ scheduler to move a job")


def _finished(conn: redis.Redis, job_id: str) -> bool:
    return Job.fetch(job_id, connection=conn).get_status(refresh=True) == JobStatus.FINISHED


@pytest.mark.parametrize("name", list(FAULTS))
def test_the_worker_rides_through(name: str, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    emqx = FakeEmqx()
    with fault_server(name) as server, serve(emqx.app()) as emqx_url, \
            worker(server.url, emqx_url, log_path) as proc:
        goes_on(server, emqx, proc, log_path)
        with redis.Redis(port=server.port) as conn:  # a job that ends while the fault lasts: RQ's bookkeeping fails
            slow = Queue(KEYS.queue("default"), connection=conn).enqueue("time.sleep", 1.5)
            wait_for(lambda: Job.fetch(slow.id, connection=conn).get_status() == JobStatus.STARTED,
                     what="the slow job to start")
        with fault(server, name):
            assert proc.poll() is None, log_path.read_text()[-3000:]
        assert proc.poll() is None, log_path.read_text()[-3000:]
        goes_on(server, emqx, proc, log_path)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()[-3000:]
    output = log_path.read_text()
    assert "Traceback" not in output and " died" not in output, output[-3000:]


def test_a_lasting_outage_is_logged_once_and_its_end_too(tmp_path: Path) -> None:
    """Redis down for 3 s: each part of the worker says once that it waits, and once that Redis is back."""
    log_path = tmp_path / "worker.log"
    emqx = FakeEmqx()
    with fault_server("restart") as server, serve(emqx.app()) as emqx_url, \
            worker(server.url, emqx_url, log_path) as proc:
        goes_on(server, emqx, proc, log_path)
        started = time.monotonic()
        with fault(server, "restart"):
            pass
        assert time.monotonic() - started >= 3
        goes_on(server, emqx, proc, log_path)
    output = log_path.read_text()
    for part in ("commands", "rq scheduler"):
        assert output.count(f"{part}: Redis in trouble") == 1, output[-3000:]
        assert output.count(f"{part}: Redis answers again") == 1, output[-3000:]


def test_the_chain_guard_starts_the_chains_once_redis_takes_writes() -> None:
    """A worker that starts while Redis refuses writes: its guard waits and starts the periodic chains within about
    a pause of Redis taking writes again (not at its next minute)."""
    with fault_server("oom") as server:
        cfg = Settings.from_env({"ADAPTER_REDIS_URL": server.url}, dotenv=None)
        stop_guard = threading.Event()
        guard = threading.Thread(target=jobs.guard_chains, args=(cfg, rq_redis(cfg), stop_guard), daemon=True)
        with fault(server, "oom"):
            guard.start()
        try:
            wait_for(lambda: all(server.client.get(KEYS.job_chain(n)) for n in ("reconcile", "retention")),
                     timeout=RESUME_S, what="the chains to start")
        finally:
            stop_guard.set()
            guard.join(10)
        assert not guard.is_alive()


@pytest.mark.parametrize("keeps_data", [True, False])
def test_rq_on_a_redis_of_its_own_comes_back_after_a_restart(keeps_data: bool, tmp_path: Path) -> None:
    """The store's Redis stays up; RQ's own (ADAPTER_RQ_REDIS_URL, as on a cluster) is killed and started again, on
    its AOF or empty (its data lost: the scheduler's locks and registration gone). Within a minute its worker runs a
    job and its scheduler moves a scheduled one again."""
    log_path = tmp_path / "worker.log"
    emqx = FakeEmqx()
    with faulty_redis() as store, faulty_redis() as rq, serve(emqx.app()) as emqx_url:
        env = {"ADAPTER_RQ_REDIS_URL": rq.url}
        with worker(store.url, emqx_url, log_path, env) as proc, redis.Redis(port=rq.port) as conn:
            queue = Queue(KEYS.queue("default"), connection=conn)
            first = queue.enqueue_in(timedelta(seconds=1), "builtins.len", "a")
            wait_for(lambda: _finished(conn, first.id), timeout=RESUME_S, what="a first scheduled job")
            rq.kill()
            if not keeps_data:
                for f in Path(rq.dir).rglob("*"):
                    if f.is_file():
                        f.unlink()
            time.sleep(3)  # the outage: what the test makes, not a wait for something
            rq.start()
            now = queue.enqueue("builtins.len", "b")
            later = queue.enqueue_in(timedelta(seconds=1), "builtins.len", "cc")
            wait_for(lambda: _finished(conn, now.id), timeout=60, what="the RQ worker to run a job again")
            wait_for(lambda: _finished(conn, later.id), timeout=60, what="the RQ scheduler to move a job again")
            assert proc.poll() is None, log_path.read_text()[-3000:]
