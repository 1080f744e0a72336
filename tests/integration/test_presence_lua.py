"""presence.lua in the real Redis (the pass's test database) against the pure presence rules, event for event."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.devices import presence_calls
from adapter.devices.presence import INITIAL, PresenceEvent, PresenceState, Transition, apply
from adapter.devices.presence_calls import (
    apply_now,
    apply_now_async,
    parse_reply,
    queue_apply,
    state_from_hash,
)
from adapter.protocol.events import Connected, Disconnected
from adapter.store.scripts import Script
from tests.conftest import async_store_client, flush_store, store_client

KEY = "test:presence:device-001"
CID = "device-001"
T0 = 1_717_000_000_000
REASONS = ("normal", "tcp_closed", "keepalive_timeout", "kicked", "takenover", "discarded")


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    client = store_client()
    flush_store(client, "test:presence")
    yield client
    flush_store(client, "test:presence")
    client.close()


def conn(at: int) -> Connected:
    return Connected(clientid=CID, connected_at=at)


def disc(at: int, reason: str = "tcp_closed", connected_at: int | None = None) -> Disconnected:
    return Disconnected(clientid=CID, disconnected_at=at, reason=reason, connected_at=connected_at)


def stored(r: redis.Redis) -> PresenceState:
    return state_from_hash(r.hgetall(KEY)) or INITIAL


def test_a_connect_and_its_disconnect(r: redis.Redis) -> None:
    assert apply_now(r, KEY, conn(T0)) == Transition(CID, True, T0, "connected", 1, T0)
    assert apply_now(r, KEY, conn(T0)) is None
    assert apply_now(r, KEY, disc(T0 + 5, "keepalive_timeout", T0)) == \
        Transition(CID, False, T0 + 5, "keepalive_timeout", 2, T0)
    assert stored(r) == PresenceState(online=False, connected_at=T0, ended_through=T0, version=2,
                                      online_time=T0, offline_time=T0 + 5)


def test_takeover_changes_nothing_in_redis(r: redis.Redis) -> None:
    assert apply_now(r, KEY, disc(T0, "takenover", T0 - 1)) is None
    assert r.exists(KEY) == 0


@pytest.mark.single_redis  # a one-Redis pipeline loads a missing script; a cluster pipeline cannot (docs/cluster.md)
def test_many_events_in_one_transaction_and_a_missing_script_is_loaded(
        r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = Script(presence_calls.PRESENCE_SCRIPT.script + f"\n-- {uuid.uuid4()}\n")
    monkeypatch.setattr(presence_calls, "PRESENCE_SCRIPT", fresh)
    assert r.script_exists(fresh.sha) == [False]
    events: list[PresenceEvent] = [conn(T0), disc(T0 + 2, connected_at=T0), conn(T0 + 3), disc(T0 + 1)]
    with r.pipeline(transaction=True) as pipe:
        for ev in events:
            queue_apply(pipe, KEY, ev)
        replies = pipe.execute()
    assert [parse_reply(reply, CID) for reply in replies] == [
        Transition(CID, True, T0, "connected", 1, T0), Transition(CID, False, T0 + 2, "tcp_closed", 2, T0),
        Transition(CID, True, T0 + 3, "connected", 3, T0 + 3), None]


async def test_asyncio_client_and_pipeline(r: redis.Redis) -> None:
    client = async_store_client(decode_responses=True)
    try:
        first = await apply_now_async(client, KEY, conn(T0))
        async with client.pipeline(transaction=True) as pipe:
            queue_apply(pipe, KEY, disc(T0 + 4, "normal", T0))
            queue_apply(pipe, KEY, conn(T0))  # a late redelivery
            replies = await pipe.execute()
        rest = [parse_reply(reply, CID) for reply in replies]
    finally:
        await client.aclose()
    assert first == Transition(CID, True, T0, "connected", 1, T0)
    assert rest == [Transition(CID, False, T0 + 4, "normal", 2, T0), None]


# Any events at all, not only physically possible histories: the script must agree with the function
# on every input. Times close together so that ties and reorderings are common.
times = st.integers(0, 12).map(lambda x: T0 + x)
presence_events = st.one_of(
    st.builds(conn, times),
    st.builds(disc, times, st.sampled_from(REASONS), st.none() | times),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(presence_events, max_size=16))
def test_script_agrees_with_the_pure_function(r: redis.Redis, events: list[PresenceEvent]) -> None:
    flush_store(r, "test:presence")  # the fixture flushes once per test, this once per example
    state: PresenceState | None = None
    for ev in events:
        state, want = apply(state, ev)
        assert apply_now(r, KEY, ev) == want
        assert stored(r) == state
