"""The worker's service threads (adapter/worker.py LoopThread): a service that raises or ends on its own has died
and says so; one asked to stop, or allowed to finish (burst mode), has not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest

from adapter.worker import LoopThread
from tests.support.servers import wait_for


def run(service: Callable[[asyncio.Event], Awaitable[object]], *,
        may_finish: bool = False) -> tuple[LoopThread, threading.Event]:
    died = threading.Event()
    t = LoopThread("svc", service, on_death=died.set, may_finish=may_finish)
    t.start()
    t.thread.join(10)
    assert not t.thread.is_alive()
    return t, died


async def ends(stop: asyncio.Event) -> None:
    return None


async def raises(stop: asyncio.Event) -> None:
    raise RuntimeError("broken service")


def test_a_service_that_raises_has_died(caplog: pytest.LogCaptureFixture) -> None:
    t, died = run(raises)
    assert t.failed and died.is_set()
    assert any(r.exc_info and "broken service" in str(r.exc_info[1]) for r in caplog.records)


def test_a_service_that_ends_on_its_own_has_died() -> None:
    t, died = run(ends)
    assert t.failed and died.is_set()


def test_ending_is_fine_in_burst_mode() -> None:
    t, died = run(ends, may_finish=True)
    assert not t.failed and not died.is_set()


def test_a_service_asked_to_stop_has_not_died() -> None:
    async def waits(stop: asyncio.Event) -> None:
        await stop.wait()

    died = threading.Event()
    t = LoopThread("svc", waits, on_death=died.set)
    t.start()
    wait_for(lambda: t.stopping is not None, what="the service to start")
    t.stop(10)
    assert not t.thread.is_alive() and not t.failed and not died.is_set()


def test_the_pump_and_the_runner_run_on_uvloop() -> None:
    """uvloop where installed (make install installs it, with uvicorn[standard]): less CPU per delivery."""
    uvloop = pytest.importorskip("uvloop")
    seen: list[object] = []

    async def note(stop: asyncio.Event) -> None:
        seen.append(asyncio.get_running_loop())

    _, died = run(note, may_finish=True)
    assert not died.is_set() and len(seen) == 1 and isinstance(seen[0], uvloop.Loop)
