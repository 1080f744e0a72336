"""adapter/delivery/gate.py: a target's share of a pump. At most `limit` requests in flight, waiters served in
order, every waiter gives up once the target is slow, a cancelled waiter neither holds nor loses a slot."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from adapter.delivery import gate as gate_module
from adapter.delivery.gate import Gate


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


def test_at_most_limit_in_flight_and_waiters_go_in_order() -> None:
    async def main() -> list[int]:
        g = Gate(2)
        order: list[int] = []
        in_flight, most = 0, 0

        async def one(i: int) -> None:
            nonlocal in_flight, most
            token = await g.turn()
            assert token is not None
            in_flight += 1
            most = max(most, in_flight)
            order.append(i)
            await asyncio.sleep(0.001 * (i % 3))
            in_flight -= 1
            g.done(token)

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), 5)
        assert most == 2 and g.free == 2 and not g.waiters and not g.started
        return order

    assert run(main) == list(range(20))


def test_waiters_give_up_once_the_target_is_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate_module, "SLOW_S", 0.05)

    async def main() -> None:
        g = Gate(1)
        held = await g.turn()  # a black hole: never done
        assert held is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiting = await asyncio.wait_for(asyncio.gather(*(g.turn() for _ in range(3))), 5)
        assert waiting == [None, None, None]
        assert 0.04 <= loop.time() - started < 1.0
        assert await g.turn() is None  # slow already: no wait
        g.done(held)
        assert await g.turn() is not None  # it answered: a turn again

    run(main)


def test_a_target_that_answers_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate_module, "SLOW_S", 0.05)

    async def main() -> None:
        g = Gate(1)
        tokens: list[int | None] = []

        async def one() -> None:
            token = await g.turn()
            tokens.append(token)
            await asyncio.sleep(0.02)  # each request under SLOW_S: never slow, however long the line
            if token is not None:
                g.done(token)

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(10))), 5)  # the last one waits ~0.18 s in all
        assert None not in tokens and len(tokens) == 10

    run(main)


@pytest.mark.parametrize("given_first", [False, True], ids=["cancelled-in-line", "cancelled-once-given-its-slot"])
def test_a_cancelled_waiter_neither_holds_nor_loses_a_slot(given_first: bool) -> None:
    """Cancelled while in line: skipped. Cancelled after a slot that ended was handed to it, before it ran: it
    hands the slot on."""

    async def main() -> None:
        g = Gate(1)
        first = await g.turn()
        assert first is not None
        waiter = asyncio.ensure_future(g.turn())
        behind = asyncio.ensure_future(g.turn())
        await asyncio.sleep(0)
        if given_first:
            g.done(first)  # the slot goes to `waiter`, which has not run yet
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        if not given_first:
            g.done(first)
        token = await asyncio.wait_for(behind, 1)
        assert token is not None
        g.done(token)
        assert g.free == 1 and not g.waiters

    run(main)
