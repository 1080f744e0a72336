"""Event delivery: EMQX's HTTP-action outcome rules, per-client order, retries, drops, bounds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from adapter_devtools.devbroker.counters import Counters
from adapter_devtools.devbroker.delivery import EventPoster, Outcome, classify, request_headers, retry_delay

URL = "http://ingest.test/emqx/events"


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Outcome.OK), (204, Outcome.OK), (None, Outcome.RETRY), (429, Outcome.RETRY), (503, Outcome.RETRY),
    (400, Outcome.DROP), (401, Outcome.DROP), (404, Outcome.DROP), (500, Outcome.DROP), (502, Outcome.DROP),
    (302, Outcome.DROP),
])
def test_classify_follows_emqx(status: int | None, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_retry_delay_grows_and_is_capped() -> None:
    delays = [retry_delay(n) for n in range(10)]
    assert delays == sorted(delays) and delays[0] > 0 and max(delays) == 2.0


def test_headers_are_emqx_defaults_plus_bearer() -> None:
    headers = request_headers("tok")
    assert headers["authorization"] == "Bearer tok" and headers["content-type"] == "application/json"
    assert "authorization" not in request_headers(None)


class Ingest:
    """A MockTransport answering from a per-call script; records bodies it accepted."""

    def __init__(self, answer: Callable[[dict[str, Any], int], int | Exception] = lambda _b, _n: 200,
                 delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls = 0
        self.accepted: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        body = json.loads(request.content)
        self.headers.append(request.headers)
        if self.delay:
            await asyncio.sleep(self.delay)
        result = self.answer(body, self.calls)
        if isinstance(result, Exception):
            raise result
        if 200 <= result < 300:
            self.accepted.append(body)
        return httpx.Response(result)


async def run(ingest: Ingest, scenario: Callable[[EventPoster], Coroutine[Any, Any, None]],
              **kwargs: Any) -> Counters:
    counters = Counters()
    poster = EventPoster(URL, "tok", counters, transport=httpx.MockTransport(ingest.handle), **kwargs)
    try:
        await scenario(poster)
    finally:
        await poster.close(1.0)
    return counters


async def submit_and_wait(poster: EventPoster, bodies: list[tuple[str, dict[str, Any]]]) -> None:
    for key, body in bodies:
        poster.submit(key, body)
    assert await poster.wait_idle(5.0)


async def test_each_clients_events_keep_their_order_while_clients_interleave() -> None:
    ingest = Ingest(delay=0.001)
    bodies = [(f"c{i % 3}", {"clientid": f"c{i % 3}", "n": i}) for i in range(60)]
    counters = await run(ingest, lambda p: submit_and_wait(p, bodies))
    assert counters.dev["events.posted"] == 60
    for client in ("c0", "c1", "c2"):
        seen = [b["n"] for b in ingest.accepted if b["clientid"] == client]
        assert seen == sorted(seen) and len(seen) == 20
    assert ingest.headers[0]["authorization"] == "Bearer tok"


async def test_503_429_and_connection_errors_are_retried_then_delivered() -> None:
    script: list[int | Exception] = [503, 429, httpx.ConnectError("refused"), 200]
    ingest = Ingest(lambda _b, n: script[n - 1])
    counters = await run(ingest, lambda p: submit_and_wait(p, [("c", {"clientid": "c"})]))
    assert ingest.calls == 4 and len(ingest.accepted) == 1
    assert counters.dev["events.retried"] == 3 and counters.dev["events.posted"] == 1


async def test_a_retrying_event_holds_back_only_its_own_client() -> None:
    ingest = Ingest(lambda b, _n: 503 if b["clientid"] == "slow" and not b.get("ok") else 200)

    async def scenario(poster: EventPoster) -> None:
        poster.submit("slow", {"clientid": "slow"})
        poster.submit("slow", {"clientid": "slow", "ok": True})
        poster.submit("fast", {"clientid": "fast"})
        await asyncio.sleep(0.2)
        assert [b["clientid"] for b in ingest.accepted] == ["fast"]

    counters = await run(ingest, scenario, retry_ttl=0.4)
    # the TTL runs from submission (EMQX request_ttl): the event queued behind expires with it
    assert counters.dev["events.expired"] == 2
    assert [b["clientid"] for b in ingest.accepted] == ["fast"]


async def test_other_statuses_drop_the_event_at_once() -> None:
    ingest = Ingest(lambda b, _n: 400 if b["n"] == 0 else 200)
    counters = await run(ingest, lambda p: submit_and_wait(p, [("c", {"n": 0}), ("c", {"n": 1})]))
    assert ingest.calls == 2 and [b["n"] for b in ingest.accepted] == [1]
    assert counters.dev["events.dropped"] == 1 and counters.dev["events.retried"] == 0


async def test_submit_never_blocks_and_is_bounded() -> None:
    ingest = Ingest(delay=0.05)

    async def scenario(poster: EventPoster) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(10):
            poster.submit(f"c{i}", {"n": i})
        assert loop.time() - started < 0.05
        assert poster.pending == 3
        assert await poster.wait_idle(5.0)

    counters = await run(ingest, scenario, max_pending=3)
    assert counters.dev["events.queue_full"] == 7 and counters.dev["events.posted"] == 3


async def test_without_a_url_nothing_is_sent() -> None:
    counters = Counters()

    poster = EventPoster(None, None, counters)
    poster.submit("c", {"n": 1})
    assert poster.pending == 0
    await poster.close(0.1)
    assert counters.dev["events.unsent"] == 1


async def test_close_abandons_what_cannot_be_delivered_in_the_grace_time() -> None:
    ingest = Ingest(lambda _b, _n: 503)
    counters = Counters()

    poster = EventPoster(URL, None, counters, transport=httpx.MockTransport(ingest.handle))
    poster.submit("c", {"n": 1})
    poster.submit("c", {"n": 2})
    await asyncio.sleep(0.05)
    await poster.close(0.1)
    assert poster.pending == 0
    assert counters.dev["events.abandoned"] == 2 and ingest.calls >= 1
