"""The pump's view of its targets' breakers (delivery/breaker.py): a read of Redis that began before this pump's
own attempts judged the breaker must not undo what they saw (their outcomes may not be written yet).

The bug this pins: two deliveries of one target fetch its record at once; the first read comes back, its
deliveries fail and open the breaker in memory, then the second read (taken before those outcomes were written)
came back and reset the breaker to closed with no failures, so one more request went out past the threshold
(tests/integration/test_delivery_limits.py test_breaker_state_is_visible_while_open, one in four on the cluster).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapter.delivery import breaker
from adapter.delivery.breaker import FRESH_S, Targets
from adapter.delivery.signing import new_secret
from adapter.store.keys import Keys

SECRET = new_secret()


class FakeRedis:
    """A target record and its engine state; each read (one round of two HMGETs, breaker.cluster_round) takes the
    state when it begins, then answers when its gate (in `gates`, in order; None: at once) is set."""

    def __init__(self) -> None:
        self.state: dict[str, bytes] = {}
        self.gates: list[asyncio.Event | None] = []


async def fake_round(client: FakeRedis, commands: Any) -> list[list[bytes | None]]:
    state = dict(client.state)  # what Redis holds when the read begins
    gate = client.gates.pop(0) if client.gates else None
    if gate is not None:
        await gate.wait()
    return [[b"http://127.0.0.1:9/x", b"1", SECRET.encode(), b"device"],
            [state.get("breaker"), state.get("probeAt"), state.get("failures")]]


@pytest.fixture(autouse=True)
def reads_from_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(breaker, "cluster_round", fake_round)


async def test_a_read_begun_before_the_pumps_own_verdicts_does_not_undo_them() -> None:
    client = FakeRedis()  # closed, no failures
    targets = Targets(client, Keys("iot"), 30_000)
    slow = asyncio.Event()
    client.gates = [slow, None]
    late = asyncio.create_task(targets.get("callback:1", 0))  # its read begins now, answers later
    await asyncio.sleep(0)
    target = await targets.get("callback:1", 0)  # the other delivery's read answers at once
    assert target is not None and not target.open
    for _ in range(3):  # this pump's three attempts fail: open here at once
        target.failed(3, 30_000)
    assert target.open and target.failures == 3
    slow.set()
    assert await late is target
    assert target.open and target.failures == 3 and target.probe_at > 0  # not closed by the older read


async def test_a_read_begun_after_them_applies_what_redis_holds() -> None:
    client = FakeRedis()
    targets = Targets(client, Keys("iot"), 30_000)
    target = await targets.get("callback:1", 0)
    assert target is not None
    for _ in range(3):
        target.failed(3, 30_000)
    client.state = {"breaker": b"open", "probeAt": b"123", "failures": b"3"}  # what the outcomes wrote
    target.fetched -= FRESH_S  # stale: read again
    assert await targets.get("callback:1", 0) is target
    assert target.open and target.probe_at == 123 and target.failures == 3
    client.state = {}  # another pump's probe closed it
    target.fetched -= FRESH_S
    assert await targets.get("callback:1", 0) is target
    assert not target.open and target.failures == 0
    target.failed(3, 30_000)
    target.succeeded()
    assert not target.open and target.failures == 0 and target.observed == 5


async def test_fresh_answers_the_last_read_while_it_is_fresh_and_nothing_before_or_after() -> None:
    client = FakeRedis()
    targets = Targets(client, Keys("iot"), 30_000)
    assert targets.fresh("callback:1", 0) is None  # never read: `get` reads it
    target = await targets.get("callback:1", 0)
    assert target is not None and targets.fresh("callback:1", 0) is target
    target.fetched -= FRESH_S  # stale: `get` reads it again
    assert targets.fresh("callback:1", 0) is None
    assert await targets.get("callback:1", 0) is target and targets.fresh("callback:1", 0) is target
