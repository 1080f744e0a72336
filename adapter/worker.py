"""`adapter worker`: an RQ worker on every queue the service uses (adapter/jobs/rq_worker.py, with RQ's scheduler in
a thread: adapter/jobs/scheduler.py), with the delivery pump, the command runner (adapter/commands/runner.py) and the
periodic-chain guard and the rollouts' guard (adapter/rollouts/chain.py) beside it in the same process. RQ runs
the periodic jobs (reconciliation, retention), large command requests and rollout drivers: adapter/jobs/entry.py.

Every part waits out Redis trouble and goes on (docs/reliability.md); the process exits 1 only on a bug of its own:
a service thread that dies stops the RQ worker (warm: the job in progress finishes, or ends early between two
batches), and a warm shutdown still running STOP_BOUND s later ends the process at once.

Why the pump is not an RQ job: RQ runs one job at a time per worker, so a long-lived stream consumer held
as a job would starve every other job, and RQ notices a dead worker's job only after minutes. The pump
keeps its own leases and claims a dead pump's deliveries within one lease (docs/design.md §6, docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable

from rq import Queue

from adapter import collector
from adapter.commands.runner import run_commands
from adapter.delivery.pump import run_pump
from adapter.jobs import entry as jobs
from adapter.jobs import shutdown
from adapter.jobs.rq_worker import RidingWorker
from adapter.jobs.scheduler import run_scheduler
from adapter.rollouts.chain import run_guard
from adapter.settings import Settings
from adapter.store import faults
from adapter.store.connections import check_redis, rq_redis
from adapter.store.keys import Keys

QUEUES = ("default",)
STOP_BOUND = 10.0  # s a warm shutdown may take before the process exits anyway (status 1)
log = logging.getLogger("adapter.worker")


def queues(settings: Settings) -> list[Queue]:
    conn = rq_redis(settings)  # RQ's own Redis (ADAPTER_RQ_REDIS_URL): never the cluster
    keys = Keys.of(settings)
    return [Queue(keys.queue(name), connection=conn) for name in QUEUES]


class ServiceThread:
    """A service of the worker process in a thread of its own; `stop()` asks it to finish what it has in flight. A
    service that raises, or ends before `stop()` (unless it `may_finish`, in burst mode), has died: `failed` is set,
    the traceback logged, and `on_death` called (from this thread). Redis trouble that ends a service after `stop()`
    (it gave up waiting for Redis because it is stopping) is no death."""

    def __init__(self, name: str, *, on_death: Callable[[], None] | None = None, may_finish: bool = False) -> None:
        self.on_death = on_death
        self.may_finish = may_finish
        self.failed = False
        self.stop_requested = False
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def serve(self) -> None:
        raise NotImplementedError

    def _main(self) -> None:
        try:
            self.serve()
        except BaseException as exc:
            if self.stop_requested and faults.trouble(exc):
                log.warning("%s: stopped while Redis was in trouble: %s: %s", self.thread.name, type(exc).__name__,
                            exc)
            else:
                self.failed = True
                log.exception("%s died", self.thread.name)
        else:
            if not (self.may_finish or self.stop_requested):
                self.failed = True
                log.error("%s ended on its own", self.thread.name)
        if self.failed and self.on_death is not None:
            self.on_death()

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_requested = True
        self._signal_stop()
        self.thread.join(timeout)

    def _signal_stop(self) -> None:
        raise NotImplementedError


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (uvicorn[standard] brings it, and the API runs on it), else
    asyncio's: the pump and the runner spend much of their CPU in the loop's own machinery (docs/benchmarks.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop does not build on every platform
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread(ServiceThread):
    """An asyncio service on its own event loop (the delivery pump, the command runner)."""

    def __init__(self, name: str, service: Callable[[asyncio.Event], Awaitable[object]], *,
                 on_death: Callable[[], None] | None = None, may_finish: bool = False) -> None:
        super().__init__(name, on_death=on_death, may_finish=may_finish)
        self.service = service
        self.loop = new_loop()
        self.stopping: asyncio.Event | None = None

    def serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.stopping = asyncio.Event()
        try:
            self.loop.run_until_complete(self.service(self.stopping))
        finally:
            self.loop.close()

    def _signal_stop(self) -> None:
        if self.stopping is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stopping.set)


class PlainThread(ServiceThread):
    """A synchronous service (RQ's scheduler, the periodic-chain guard): `service(stop)` returns once `stop` is set."""

    def __init__(self, name: str, service: Callable[[threading.Event], object], *,
                 on_death: Callable[[], None] | None = None) -> None:
        super().__init__(name, on_death=on_death)
        self.service = service
        self.stopping = threading.Event()

    def serve(self) -> None:
        self.service(self.stopping)

    def _signal_stop(self) -> None:
        self.stopping.set()


def _stop_this_process() -> None:
    """Ask the RQ worker in the main thread for its warm shutdown (it handles SIGTERM: the job in progress
    finishes, or ends early between two batches); `run` then answers 1 and the supervisor starts the worker again.
    Before the RQ worker has installed its handler, SIGTERM ends the process at once, which is non-zero too."""
    os.kill(os.getpid(), signal.SIGTERM)


class StopBound:
    """Once armed, exits the process (status 1) should it still run `seconds` later: a warm shutdown waits for the
    job in progress, and a job that does not end (one stuck on a call, one that never looks at shutdown.py) must not
    keep up a worker that no longer delivers (its supervisor restarts only a process that exits)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._armed = threading.Lock()

    def arm(self) -> None:
        if self._armed.acquire(blocking=False):
            timer = threading.Timer(self.seconds, self._expire)
            timer.daemon = True
            timer.start()

    def _expire(self) -> None:
        log.error("worker: the warm shutdown did not end within %.0f s: exiting now with status 1; where each "
                  "thread was:", self.seconds)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        faulthandler.dump_traceback(all_threads=True)  # what held the stop up, for whoever reads the log
        sys.stderr.flush()
        os._exit(1)


def lower_priority(settings: Settings) -> int:
    """ADAPTER_WORKER_NICE: the worker gives the CPU to the API first (ingest, reads) where they share cores; its
    work waits in Redis meanwhile. Answers the process's niceness."""
    return os.nice(settings.worker_nice)


def run(settings: Settings, *, burst: bool = False) -> int:
    check_redis(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if settings.worker_nice:
        log.info("worker: running at niceness %d (ADAPTER_WORKER_NICE)", lower_priority(settings))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per publish of the command runner
    qs = queues(settings)
    working = threading.Event()  # while the RQ worker runs: a thread's death stops it
    bound = StopBound(STOP_BOUND)

    def on_stop() -> None:  # any warm shutdown: long jobs end between batches, and the whole stop is bounded
        shutdown.request()
        bound.arm()

    def on_death() -> None:
        if working.is_set():
            on_stop()
            _stop_this_process()

    services: list[ServiceThread] = [
        LoopThread("delivery-pump", lambda stop: run_pump(settings, stop, burst=burst),
                   on_death=on_death, may_finish=burst),
        LoopThread("command-runner", lambda stop: run_commands(settings, stop, burst=burst),
                   on_death=on_death, may_finish=burst),
    ]
    if not burst:  # RQ's scheduler, and the periodic jobs (adapter/jobs/entry.py): one chain each, however many workers
        services += [PlainThread("rq-scheduler", lambda stop: run_scheduler(qs, rq_redis(settings), stop),
                                 on_death=on_death),
                     PlainThread("periodic-guard", lambda stop: jobs.guard_chains(settings, rq_redis(settings), stop),
                                 on_death=on_death),
                     LoopThread("rollout-guard", lambda stop: run_guard(settings, stop), on_death=on_death)]
    jobs.configure(settings)
    collector.settle()  # what the process set up stays; the collector's schedule for serving (adapter/collector.py)
    working.set()
    for service in services:
        service.start()
    ended_on_request = True
    try:
        # SimpleWorker: jobs run in this process. RQ's forking Worker would fork a process whose other threads
        # (pump, command runner) may hold a lock at that instant (logging, a connection pool): the child hangs.
        worker = RidingWorker(qs, connection=qs[0].connection, on_stop=on_stop)
        worker.work(burst=burst, with_scheduler=burst)  # burst: RQ moves the due scheduled jobs once, no process
        ended_on_request = burst or shutdown.requested()
        working.clear()
        if burst:
            for service in services:
                service.thread.join()
    finally:
        working.clear()
        for service in reversed(services):
            service.stop()
    dead = [t.thread.name for t in services if t.failed]
    if dead:
        log.error("worker: exiting with status 1: %s died", " and ".join(dead))
        return 1
    if not ended_on_request:
        log.error("worker: exiting with status 1: the RQ worker ended on its own (see its log above)")
        return 1
    return 0
