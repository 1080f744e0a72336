"""The in-memory route table: matching against the reference matcher (no I/O), loading from the real Redis,
and two followers (as two API processes would run them) that see every change made through the API within 1 s,
with and without notifications. Also: the packed delivery XADDs land as the delivery engine reads them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from adapter.delivery.model import Delivery
from adapter.devices import calls as device_calls
from adapter.protocol.events import MessagePublished
from adapter.protocol.topics import matches
from adapter.settings import Settings
from adapter.store.connections import batcher_for
from adapter.store.keys import Keys
from adapter.targets import route_table
from adapter.targets.forwarding import FORWARD, body, forward_call, forward_of
from adapter.targets.route_table import RouteInfo, RouteTable
from adapter.targets.routes import RouteStore
from tests.conftest import async_store_client, primaries, store_client
from tests.integration.test_routes_api import BASE, HOOK, app_with_routes
from tests.support.servers import serve

PROPAGATION = 1.0  # s: the bound for a change to reach every process


# --- matching, without Redis -----------------------------------------------------------------------------

_level = st.sampled_from(["a", "b", "", "$SYS", "dma", "resp"])
_filter_level = st.sampled_from(["a", "b", "", "$SYS", "dma", "+"])


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(_filter_level, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels = [*levels[:3], "#"]
    return "/".join(levels) or "+"  # "" is no filter


topic_names = st.lists(_level, min_size=1, max_size=5).map("/".join)


@given(routes_=st.dictionaries(st.integers(1, 10**6), st.tuples(topic_filters(), st.booleans()), max_size=30),
       probes=st.lists(topic_names, max_size=20))
def test_match_equals_the_reference_over_the_enabled_routes(routes_: dict[int, tuple[str, bool]],
                                                            probes: list[str]) -> None:
    table = RouteTable(Keys("iot"))  # in memory: no store
    enabled = {str(rid): topic for rid, (topic, on) in routes_.items() if on}
    table.load(enabled, 3)
    assert (len(table), table.version) == (len(enabled), 3)

    def check(enabled: dict[str, str]) -> None:
        for topic in probes * 2:  # asked again: answered from the remembered matches
            expected = [RouteInfo(int(rid), f) for rid, f in sorted(enabled.items(), key=lambda i: int(i[0]))
                        if matches(f, topic)]
            assert list(table.match(topic)) == expected

    check(enabled)
    # a reload answers from the new routes only, even for the topics asked before
    flipped = {str(rid): topic for rid, (topic, on) in routes_.items() if not on}
    table.load(flipped, 4)
    check(flipped)


def test_match_on_the_seed_example_and_dollar_topics() -> None:
    table = RouteTable(Keys("iot"))  # in memory: no store
    table.load({"1": "dma/resp/cmd", "2": "dma/+/cmd", "3": "#", "4": "$SYS/#", "5": "+/resp/#",
                "6": "dma/resp"}, 1)
    ids = lambda topic: [r.id for r in table.match(topic)]  # noqa: E731
    assert ids("dma/resp/cmd") == [1, 2, 3, 5]
    assert ids("$SYS/broker/uptime") == [4]
    assert ids("other") == [3]
    assert table.match("dma/resp/cmd")[0] == RouteInfo(1, "dma/resp/cmd")


def test_topics_beyond_the_remembered_ones_are_still_matched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(route_table, "MATCH_CACHE", 2)
    table = RouteTable(Keys("iot"))  # in memory: no store
    table.load({"1": "a/+", "2": "a/3"}, 1)
    for _ in range(2):
        assert [[r.id for r in table.match(f"a/{n}")] for n in range(5)] == [[1], [1], [1], [1, 2], [1]]
    assert len(table._state[1]) == 2


def test_entries_that_are_not_routes_are_skipped() -> None:
    table = RouteTable(Keys("iot"))  # in memory: no store
    table.load({"1": "a/#/b", "x": "a/b", "2": "a/b"}, 9)
    assert [r.id for r in table.match("a/b")] == [2] and len(table) == 1


# --- loading and following, on the real Redis ------------------------------------------------------------

async def until(predicate: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll `predicate` until truthy; answer how long it took; fail after `timeout` seconds."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def ids_of(table: RouteTable, topic: str) -> list[int]:
    return [r.id for r in table.match(topic)]


async def test_refresh_loads_the_enabled_routes_and_the_version(redis_db: redis.Redis, keys: Keys) -> None:
    client = async_store_client(decode_responses=True)
    try:
        store = RouteStore(client, keys)
        on, _ = await store.create("on", "dma/resp/cmd", HOOK)
        await store.create("off", "dma/#", HOOK, enabled=False)
        table = RouteTable(keys)
        await table.refresh(client)
        assert ids_of(table, "dma/resp/cmd") == [on.id] and table.version == 2
        raw = async_store_client()  # a client that does not decode answers
        try:
            await table.refresh(raw)
        finally:
            await raw.aclose()
        assert ids_of(table, "dma/resp/cmd") == [on.id] and table.version == 2
    finally:
        await client.aclose()


@pytest.fixture
def admin_url(settings: Settings) -> Iterator[str]:
    with serve(app_with_routes(settings)) as url:
        yield url


@asynccontextmanager
async def following(tables: list[RouteTable], clients: list[aioredis.Redis]) -> AsyncIterator[None]:
    """Each table follows the routes on its client, loaded once before the body; the clients closed after."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(t.follow(c, stop)) for t, c in zip(tables, clients, strict=True)]
    try:
        await until(lambda: all(t.version is not None for t in tables), 2, "the first loads")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        for c in clients:
            await c.aclose()


async def test_two_followers_see_every_api_change_within_a_second(admin_url: str, redis_db: redis.Redis,
                                                                  keys: Keys) -> None:
    tables = [RouteTable(keys, check_every=60), RouteTable(keys, check_every=60)]  # notifications only
    clients = [async_store_client(decode_responses=True) for _ in tables]
    async with following(tables, clients), httpx.AsyncClient(base_url=admin_url, timeout=10) as api:
        r = await api.post("/iot/api/v1/auth/login", json={"user": "admin", "password": "admin-secret-1"})
        api.headers["Authorization"] = f"Bearer {r.json()['data']['token']}"

        async def step(request: Awaitable[httpx.Response], topic: str, expected: list[int]) -> None:
            answer = await request
            assert answer.status_code == 200, answer.text
            for n, t in enumerate(tables):
                took = await until(lambda t=t: ids_of(t, topic) == expected, PROPAGATION,
                                   f"follower {n} to see {expected} on {topic}")
                assert took < PROPAGATION

        first, second = ({"topic": t, "name": t, "url": HOOK} for t in ("dma/resp/cmd", "dma/+/cmd"))
        await step(api.post(BASE, json=first), "dma/resp/cmd", [1])
        await step(api.post(BASE, json=second), "dma/resp/cmd", [1, 2])
        await step(api.put(BASE, json={"id": 1, "enabled": False}), "dma/resp/cmd", [2])
        await step(api.put(BASE, json={"id": 2, "topic": "dma/#"}), "dma/x/y", [2])
        await step(api.put(BASE, json={"id": 1, "enabled": True}), "dma/resp/cmd", [1, 2])
        await step(api.delete(BASE, params={"id": 2}), "dma/x/y", [])
    assert all(t.version == 6 for t in tables)


async def test_a_change_without_a_notification_arrives_by_the_version_check(redis_db: redis.Redis, keys: Keys) -> None:
    table = RouteTable(keys)
    clients = [async_store_client(decode_responses=True)]
    async with following([table], clients):
        # what a lost notification looks like: the data and the version move, nobody publishes
        redis_db.hset(keys.routes_enabled(), "7", "quiet/+")
        redis_db.incr(keys.routes_version())
        took = await until(lambda: ids_of(table, "quiet/x") == [7], PROPAGATION, "the version check")
        assert took < PROPAGATION


async def test_a_follower_whose_connection_drops_catches_up(redis_db: redis.Redis, keys: Keys) -> None:
    name = f"route-table-test-{time.monotonic_ns()}"
    table = RouteTable(keys)
    clients = [async_store_client(decode_responses=True, client_name=name)]
    async with following([table], clients):
        subscribed = [(node, c) for node in primaries(redis_db) for c in node.client_list()  # its node's
                      if c.get("name") == name and c.get("sub") == "1"]
        assert len(subscribed) == 1, subscribed
        node, connection = subscribed[0]
        node.client_kill_filter(_id=connection["id"])
        async with async_store_client(decode_responses=True) as writer:
            await RouteStore(writer, keys).create("late", "late/#", HOOK)
        await until(lambda: ids_of(table, "late/x") == [1], 2 + PROPAGATION, "the follower to catch up")


# --- the packed deliveries on the real Redis -------------------------------------------------------------

def message(n: int, clientid: str = "SN1") -> MessagePublished:
    return MessagePublished(id=f"{n:032X}", clientid=clientid, topic="dma/resp/cmd", payload=f'{{"n":{n}}}',
                            encoding="plain", qos=1, retain=False, received_at=1717000000000 + n,
                            username=clientid)


async def test_deliveries_land_in_the_clients_partition_in_message_order(redis_db: redis.Redis, keys: Keys) -> None:
    table = RouteTable(keys)
    table.load({"1": "dma/resp/cmd", "2": "dma/+/cmd", "3": "other/#"}, 1)
    msgs = [message(n) for n in range(20)] + [message(100, "SN2")]

    client = async_store_client()
    try:
        batcher = batcher_for(client, [FORWARD])
        await batcher.load_scripts()
        for msg in msgs:
            fwd = forward_of(msg, table.match(msg.topic), keys)
            assert fwd is not None
            packed = device_calls.packed(forward_call(fwd))
            for _ in range(2):  # a redelivered event forwards nothing again
                replies = await batcher.submit([packed])
                assert not any(isinstance(r, Exception) for r in replies)
    finally:
        await client.aclose()
    raw = store_client()
    try:
        for clientid, sent in (("SN1", msgs[:20]), ("SN2", msgs[20:])):
            stream = keys.delivery_stream(keys.stream_partition(clientid))
            got = [Delivery.from_fields(f) for _, f in raw.xrange(stream) if f[b"k"] == clientid.encode()]
            for route_id in (1, 2):
                mine = [d for d in got if d.target == f"route:{route_id}"]
                assert [d.id for d in mine] == [f"m:{m.id}:route:{route_id}" for m in sent]
                assert [d.body for d in mine] == [body(m, route_id) for m in sent]
                assert all(d.attempts == 0 for d in mine)
    finally:
        raw.close()
