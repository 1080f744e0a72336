"""adapter/collector.py: a long-running process settles the garbage collector once it has started, and both
`adapter api` (uvicorn's factory) and `adapter worker` do."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from adapter import collector, worker
from adapter.http import runner
from adapter.settings import Settings


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_is_alive_and_collects_the_young_less_often(restored: None) -> None:
    kept: list[list[int]] = [[] for _ in range(100)]  # containers alive at the start: frozen, never walked again
    assert gc.get_freeze_count() == 0
    collector.settle()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == collector.THRESHOLD
    assert collector.THRESHOLD[0] > 700  # CPython's default: what it replaces


def test_after_settling_the_collector_still_runs_on_its_own_and_takes_cycles(restored: None) -> None:
    collector.settle()

    class Node:
        other: Any = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b  # a cycle: reference counting alone never frees it
    before = gc.get_stats()[0]["collections"]
    churn = [[] for _ in range(2 * collector.THRESHOLD[0])]  # past the young generation's threshold: no collect()
    assert gc.get_stats()[0]["collections"] > before and gone() is None and len(churn) > 0


def test_adapter_api_serves_the_factory_that_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(runner, "preflight", lambda settings: None)
    monkeypatch.setattr(runner.uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    runner.run_api(Settings(), host="127.0.0.1", port=1)
    assert seen["app"] == "adapter.app:create_server_app" and seen["factory"] is True


def test_adapter_worker_settles_before_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(worker, "check_redis", lambda settings: None)
    monkeypatch.setattr(collector, "settle", lambda: calls.append("settle"))

    class Stop(Exception):
        pass

    def work(*args: Any, **kwargs: Any) -> None:
        calls.append("work")
        raise Stop

    monkeypatch.setattr(worker, "queues", lambda settings: [type("Queue", (), {"connection": None})()])
    monkeypatch.setattr(worker.jobs, "configure", lambda settings: None)
    monkeypatch.setattr(worker.LoopThread, "start", lambda self: calls.append("start"))
    monkeypatch.setattr(worker.PlainThread, "start", lambda self: calls.append("start"))
    monkeypatch.setattr(worker.RidingWorker, "__init__", lambda self, *a, **kw: None)
    monkeypatch.setattr(worker.RidingWorker, "work", work)
    monkeypatch.setattr(worker.ServiceThread, "stop", lambda self: None)
    monkeypatch.setattr(worker, "new_loop", lambda: None)  # no loop runs: none to close
    with pytest.raises(Stop):
        worker.run(Settings(), burst=True)
    assert calls[0] == "settle" and "work" in calls
