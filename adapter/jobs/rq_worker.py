"""The RQ worker of `adapter worker`: rq's SimpleWorker, riding through Redis faults (docs/reliability.md).

rq 2.12's `Worker.work` quits on the first Redis error of its loop but a ConnectionError while it waits for a job:
an UNBLOCKED or READONLY answer of a demoted Redis to its BLMOVE, OOM, MISCONF, BUSY or a timeout on its heartbeat
or registry upkeep; its teardown then fails in turn (READONLY). And while it does retry a ConnectionError it backs
off up to 60 s. Here every Redis step of the loop (registering, the heartbeat, the state, the upkeep, waiting for a
job) is tried again every `outage.PAUSE` s while Redis is in trouble (faults.trouble), so the worker takes jobs again
within about that of Redis answering. What runs around a job (RQ's bookkeeping of it) is not sent twice: when Redis
fails there, the job is left to RQ's own upkeep (its started and intermediate registries), and the worker goes on.
Anything that is not Redis trouble is a bug: rq logs it and `work` returns, and the process exits 1.

A warm shutdown (SIGTERM, or a death of one of the process's services) calls `on_stop`, which tells long jobs to end
between two batches (adapter/jobs/shutdown.py) and bounds the wait (adapter/worker.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from rq import SimpleWorker
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

from adapter.jobs import shutdown
from adapter.store import faults, outage

T = TypeVar("T")
log = logging.getLogger("adapter.jobs.rq_worker")
PUBSUB_WAIT = 1.0  # s a round of the pubsub thread (rq's commands to a worker: stop, kill the job in progress)


class RidingWorker(SimpleWorker):
    exponential_backoff_factor = 1.0  # rq's own wait after a ConnectionError while dequeueing: PAUSE, not up to 60 s
    max_connection_wait_time = outage.PAUSE

    def __init__(self, *args: Any, on_stop: Callable[[], None] = shutdown.request, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_stop = on_stop
        self._birth_tried = False

    def _stopping(self) -> bool:
        return bool(self._stop_requested) or shutdown.requested()

    def _ride(self, call: Callable[[], T], what: str) -> T:
        return outage.ride(call, what=f"rq worker: {what}", stopping=self._stopping, logger=log)

    def register_birth(self) -> None:
        def once() -> None:
            if self._birth_tried:  # an earlier try may have written our key before Redis failed to answer
                self.connection.delete(self.key)
            self._birth_tried = True
            super(RidingWorker, self).register_birth()

        self._ride(once, "registering")

    def subscribe(self) -> None:
        """rq's, but its pubsub thread waits PUBSUB_WAIT s a round, not 60: redis-py 8.2's `PubSubWorkerThread.stop()`
        (which rq's `unsubscribe` calls at the worker's end) waits for the thread, and a thread that handled the
        UNSUBSCRIBE reply first sits in `get_message`'s wait for a subscription for a whole round: every stop, a
        SIGTERM too, then ran into the StopBound and exited 1."""
        def once() -> None:
            self.pubsub = self.connection.pubsub()
            self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
            self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=PUBSUB_WAIT, daemon=True,  # type: ignore[assignment]
                                                           exception_handler=self._pubsub_exception_handler)

        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self._ride(once, "subscribing")

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().set_state(state, pipeline)
        return self._ride(lambda: super(RidingWorker, self).set_state(state), "state")

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        return self._ride(lambda: super(RidingWorker, self).heartbeat(timeout), "heartbeat")

    def check_for_suspension(self, burst: bool) -> None:
        self._ride(lambda: super(RidingWorker, self).check_for_suspension(burst), "suspension check")

    def run_maintenance_tasks(self) -> None:
        self._ride(super().run_maintenance_tasks, "registry upkeep")

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Job, Queue] | None:
        return self._ride(lambda: super(RidingWorker, self).dequeue_job_and_maintain_ttl(timeout, max_idle_time),
                          "waiting for a job")

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except Exception as exc:
            if not faults.trouble(exc):
                raise
            log.warning("rq worker: Redis failed around job %s (%s: %s); RQ's registry upkeep settles it",
                        job.id, type(exc).__name__, exc)
            self.set_state(WorkerStatus.IDLE)  # waits until Redis takes writes again

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        self.on_stop()

    def set_shutdown_requested_date(self) -> None:
        try:  # informational (rq info): not worth holding a stopping worker up
            super().set_shutdown_requested_date()
        except Exception as exc:
            if not faults.trouble(exc):
                raise

    def teardown(self) -> None:
        try:
            super().teardown()
        except Exception as exc:  # our key expires by itself (rq's worker TTL)
            if not faults.trouble(exc):
                raise
            log.warning("rq worker: could not register its end: %s: %s", type(exc).__name__, exc)
