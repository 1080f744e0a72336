"""Whether this worker process is stopping (a warm shutdown: SIGTERM, or one of its service threads died). Long jobs
look here between two batches (`check`) and end early rather than keep the process up: what they did so far is kept
(each batch is atomic), a periodic run is simply the chain's next one sooner, and a job with retries left
(create_commands) goes on from where it stopped when a worker takes it again (docs/delivery.md "What RQ runs")."""

from __future__ import annotations

import threading
from collections.abc import Callable

_stopping = threading.Event()


class Stopped(Exception):
    """The worker is stopping: the job ended between two batches."""


def request() -> None:
    _stopping.set()


def requested() -> bool:
    return _stopping.is_set()


def clear() -> None:
    """For a process that runs a worker more than once (tests)."""
    _stopping.clear()


def check(stopping: Callable[[], bool] = requested) -> None:
    """Raise `Stopped` when `stopping()` says so: called by long jobs between two batches."""
    if stopping():
        raise Stopped("the worker is stopping")
