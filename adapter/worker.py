"""`adapter worker`: an RQ worker (scheduler on) on every queue the service uses, with the delivery pump
and the command runner (adapter/commands/runner.py) beside it in the same process. RQ runs the periodic
jobs (reconciliation, retention) and large command requests: adapter/jobs/entry.py.

Why the pump is not an RQ job: RQ runs one job at a time per worker, so a long-lived stream consumer held
as a job would starve every other job, and RQ notices a dead worker's job only after minutes. The pump
keeps its own leases and claims a dead pump's deliveries within one lease (docs/design.md §6, docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable

from rq import Queue, SimpleWorker

from adapter.commands.runner import run_commands
from adapter.delivery.pump import run_pump
from adapter.jobs import entry as jobs
from adapter.settings import Settings
from adapter.store.connections import check_redis, rq_redis
from adapter.store.keys import Keys

QUEUES = ("default",)
log = logging.getLogger("adapter.worker")


def queues(settings: Settings) -> list[Queue]:
    conn = rq_redis(settings)  # RQ's own Redis (ADAPTER_RQ_REDIS_URL): never the cluster
    keys = Keys.of(settings)
    return [Queue(keys.queue(name), connection=conn) for name in QUEUES]


class LoopThread:
    """An asyncio service on its own event loop in a thread of the worker process; `stop()` lets it finish
    what it has in flight. A service that raises, or ends before `stop()` (unless it `may_finish`, in burst
    mode), has died: `failed` is set, the traceback logged, and `on_death` called (from this thread)."""

    def __init__(self, name: str, service: Callable[[asyncio.Event], Awaitable[object]], *,
                 on_death: Callable[[], None] | None = None, may_finish: bool = False) -> None:
        self.service = service
        self.on_death = on_death
        self.may_finish = may_finish
        self.failed = False
        self.stop_requested = False
        self.loop = asyncio.new_event_loop()
        self.stopping: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.stopping = asyncio.Event()
        try:
            self.loop.run_until_complete(self.service(self.stopping))
        except BaseException:
            self.failed = True
            log.exception("%s died", self.thread.name)
        else:
            if not (self.may_finish or self.stop_requested):
                self.failed = True
                log.error("%s ended on its own", self.thread.name)
        finally:
            self.loop.close()
        if self.failed and self.on_death is not None:
            self.on_death()

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_requested = True
        if self.stopping is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout)


def _stop_this_process() -> None:
    """Ask the RQ worker in the main thread for its warm shutdown (it handles SIGTERM: the job in progress
    finishes); `run` then answers 1 and the supervisor starts the worker again. Before the RQ worker has
    installed its handler, SIGTERM ends the process at once, which is non-zero too."""
    os.kill(os.getpid(), signal.SIGTERM)


def run(settings: Settings, *, burst: bool = False) -> int:
    check_redis(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per publish of the command runner
    qs = queues(settings)
    working = threading.Event()  # while the RQ worker runs: a thread's death stops it

    def on_death() -> None:
        if working.is_set():
            _stop_this_process()

    commands = LoopThread("command-runner", lambda stop: run_commands(settings, stop, burst=burst),
                          on_death=on_death, may_finish=burst)
    pump = LoopThread("delivery-pump", lambda stop: run_pump(settings, stop, burst=burst),
                      on_death=on_death, may_finish=burst)
    working.set()
    pump.start()
    commands.start()
    jobs.configure(settings)
    guard_stop = threading.Event()
    if not burst:  # the periodic jobs (adapter/jobs/entry.py): one chain each, however many workers
        jobs.ensure_chains(settings, qs[0].connection)
        threading.Thread(target=jobs.guard_chains, args=(settings, qs[0].connection, guard_stop),
                         name="periodic-guard", daemon=True).start()
    try:
        # SimpleWorker: jobs run in this process. RQ's forking Worker would fork a process whose other threads
        # (pump, command runner) may hold a lock at that instant (logging, a connection pool): the child hangs.
        worker = SimpleWorker(qs, connection=qs[0].connection)
        worker.work(burst=burst, with_scheduler=True)
        working.clear()
        if burst:
            pump.thread.join()
            commands.thread.join()
    finally:
        guard_stop.set()
        working.clear()
        commands.stop()
        pump.stop()
    dead = [t.thread.name for t in (pump, commands) if t.failed]
    if dead:
        log.error("worker: exiting with status 1: %s died", " and ".join(dead))
        return 1
    return 0
