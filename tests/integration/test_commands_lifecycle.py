"""The command life cycle in commands.lua on the real Redis, step by step: create, claim, the publish
outcomes, answers, the ack timeout, waking, cancel, expiry and the indexes (docs/commands.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from adapter.commands.calls import COMMANDS, mode_call
from adapter.commands.ids import parse_id, partition_of
from adapter.commands.rules import Limits, parse_request
from adapter.commands.store import CommandStore
from adapter.errors import AppError
from tests.conftest import async_store_client, keys_for, metric_fields, new_prefix, script_flush
from tests.support.servers import wait_for

PREFIX = new_prefix()  # this module's keys: "iot" on one Redis, its own prefix on the cluster
K = keys_for(PREFIX)


@pytest.fixture
def key_prefix() -> str:
    """redis_db cleans the prefix these tests write under."""
    return K.prefix


LIMITS = Limits(max_targets=100, body_max_bytes=1024, default_expires=600, max_expires=3600)
T = TypeVar("T")


def with_store(fn: Callable[[CommandStore], Awaitable[T]]) -> T:
    async def go() -> T:
        client = async_store_client(decode_responses=True)
        try:
            return await fn(CommandStore(client, K))
        finally:
            await client.aclose()
    return asyncio.run(go())


def create(sns: list[str], **fields: Any) -> list[str]:
    req = parse_request({"to": [{"sn": sn} for sn in sns], "command": "sh", "body": {"shcmd": "whoami"},
                         **fields}, LIMITS)
    return [t["idStr"] for t in with_store(lambda s: s.create(req))]


P = K.shard("SN1")  # the partition of SN1's commands, which most tests send (0 on one Redis)


def part(cid: str) -> int:
    """The partition a command id carries (0 on one Redis)."""
    return partition_of(int(cid), K.cluster_partitions)


def lua(r: redis.Redis, mode: str, *args: Any) -> Any:
    r.script_load(COMMANDS.script)
    ks, argv = mode_call(K, P, mode, *args)
    return r.evalsha(COMMANDS.sha, len(ks), *ks, *argv)


def claim(r: redis.Redis, lease_ms: int = 10_000) -> list[str]:
    reply = lua(r, "claim", 100, lease_ms)
    return [reply[i] for i in range(0, len(reply), 9)]


def record(r: redis.Redis, cid: str, outcome: str, ack_ms: int = 30_000, at: int = 0) -> None:
    lua(r, "record", ack_ms, cid, outcome, at)


def respond(r: redis.Redis, cid: str, ok: bool, clientid: str = "SN1", msg: str | None = None) -> str:
    stored = f'{{"id":{cid},"status":"{"ok" if ok else "err"}"}}'
    return str(lua(r, "respond", K.seen(f"cmd-resp:{msg or time.monotonic_ns()}", "SN1"), 600, cid, clientid,
                   "1" if ok else "0", stored))


UNSET = {"tryTimes": "0", "publishTime": "0", "finishTime": "0", "failedTime": "0", "deliverTime": "0",
         "reason": "", "phase": "", "errors": "0"}  # not written until they change


def state(r: redis.Redis, cid: str) -> dict[str, str]:
    return {**UNSET, **r.hgetall(K.command(cid, part(cid)))}


def due(r: redis.Redis) -> list[str]:
    return r.zrange(K.commands_due(P), 0, -1)


def test_publish_now_sent_and_answered(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"])
    assert due(redis_db) == [cid] and state(redis_db, cid)["state"] == "0"
    reply = lua(redis_db, "claim", 10, 10_000)
    assert reply == [cid, "SN1", "iot_web_console", "sh", "", '{"shcmd":"whoami"}', "0", "600", "0"]
    assert claim(redis_db) == []  # leased
    record(redis_db, cid, "sent")
    s = state(redis_db, cid)
    assert (s["state"], s["tryTimes"], s["phase"]) == ("1", "1", "waiting") and int(s["publishTime"]) > 0
    assert redis_db.zscore(K.commands_due(P), cid) > time.time() * 1000 + 25_000  # the ack timeout
    assert respond(redis_db, cid, True) == "success"
    s = state(redis_db, cid)
    assert (s["state"], s["tryTimes"], s["reason"]) == ("2", "1", "") and int(s["finishTime"]) > 0
    assert due(redis_db) == [] and redis_db.zcard(K.commands_active("SN1")) == 0
    assert redis_db.get(K.command_response(cid, part(cid))) == f'{{"id":{cid},"status":"ok"}}'
    assert 590_000 < redis_db.pttl(K.command_response(cid, part(cid))) <= 600_000
    assert 590_000 < redis_db.pttl(K.command(cid, part(cid))) <= 600_000


def test_waiting_for_online(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"], publishNow=False)
    assert due(redis_db) == []
    assert lua(redis_db, "wake", "SN2") == 0 and due(redis_db) == []
    assert lua(redis_db, "wake", "SN1") == 1
    assert claim(redis_db) == [cid]
    record(redis_db, cid, "no_subscribers")
    s = state(redis_db, cid)
    assert (s["state"], s["tryTimes"], s["phase"]) == ("0", "0", "") and due(redis_db) == []
    lua(redis_db, "wake", "SN1")
    assert claim(redis_db) == [cid]


def test_an_online_device_gets_it_at_once_even_without_publish_now(redis_db: redis.Redis) -> None:
    redis_db.hset(K.client("SN1"), mapping={"online": "1"})
    [cid, _] = create(["SN1", "SN2"], publishNow=False)
    assert due(redis_db) == [cid]


def test_coming_online_while_a_send_finds_no_subscriber_sends_again(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"])
    assert claim(redis_db) == [cid]
    lua(redis_db, "wake", "SN1")  # the subscription lands while the publish is in flight
    record(redis_db, cid, "no_subscribers")
    assert claim(redis_db) == [cid]


def test_failures_resend_until_an_ok(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"], maxRetries=3)
    for answer in ("resend", "resend", "success"):
        assert claim(redis_db) == [cid]
        record(redis_db, cid, "sent")
        assert respond(redis_db, cid, answer == "success") == answer
    s = state(redis_db, cid)
    assert (s["state"], s["tryTimes"]) == ("2", "3")


def test_failures_exhaust_the_retries(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"], maxRetries=2)
    for answer in ("resend", "failed"):
        assert claim(redis_db) == [cid]
        record(redis_db, cid, "sent")
        assert respond(redis_db, cid, False) == answer
    s = state(redis_db, cid)
    assert (s["state"], s["reason"], s["tryTimes"]) == ("3", "retries_exhausted", "2")
    assert int(s["failedTime"]) > 0


def test_no_answer_within_the_ack_timeout(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"], maxRetries=2)
    for _ in range(2):
        assert claim(redis_db) == [cid]
        record(redis_db, cid, "sent", ack_ms=0)
    assert claim(redis_db) == []  # the timeout of the last send: no send left
    s = state(redis_db, cid)
    assert (s["state"], s["reason"], s["tryTimes"]) == ("3", "retries_exhausted", "2")
    assert due(redis_db) == []


def test_max_retries_zero_is_one_send(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"], maxRetries=0)
    claim(redis_db)
    record(redis_db, cid, "sent")
    assert respond(redis_db, cid, False) == "failed"


def test_broker_errors_back_off_and_count(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"])
    claim(redis_db)
    record(redis_db, cid, "retry", at=int(time.time() * 1000) + 60_000)
    s = state(redis_db, cid)
    assert (s["state"], s["tryTimes"], s["errors"], s["phase"]) == ("0", "0", "1", "")
    assert claim(redis_db) == []
    lua(redis_db, "wake", "SN1")  # coming online cuts the backoff short
    reply = lua(redis_db, "claim", 10, 10_000)
    assert reply[0] == cid and reply[8] == "1"


def test_rejected_fails(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"])
    claim(redis_db)
    record(redis_db, cid, "rejected")
    s = state(redis_db, cid)
    assert (s["state"], s["reason"]) == ("3", "rejected")
    assert metric_fields(redis_db, K)['commands_finished_total{result="rejected"}'] == 1


def test_answers_that_change_nothing(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"], maxRetries=3)
    assert respond(redis_db, cid, True) == "not_sent"
    claim(redis_db)
    record(redis_db, cid, "sent")
    assert respond(redis_db, cid, True, clientid="INTRUDER") == "foreign_client"
    assert respond(redis_db, "201811260000000009", True) == "unknown"
    assert respond(redis_db, cid, False, msg="same") == "resend"
    assert respond(redis_db, cid, False, msg="same") == "duplicate"  # EMQX redelivered the event
    assert respond(redis_db, cid, False) == "stale"  # the device said it twice: one resend only
    assert state(redis_db, cid)["state"] == "1"
    claim(redis_db)
    record(redis_db, cid, "sent")
    assert respond(redis_db, cid, True) == "success"
    assert respond(redis_db, cid, False) == "finished"
    assert state(redis_db, cid)["state"] == "2"
    counted = metric_fields(redis_db, K)
    for reason in ("not_sent", "foreign_client", "unknown", "duplicate", "stale", "finished"):
        assert counted[f'commands_responses_ignored_total{{reason="{reason}"}}'] == 1


def test_an_answer_before_the_send_is_recorded(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"])
    claim(redis_db)
    assert respond(redis_db, cid, True) == "success"  # the device was faster than the runner's record
    record(redis_db, cid, "sent")
    s = state(redis_db, cid)
    assert (s["state"], s["tryTimes"]) == ("2", "1") and int(s["publishTime"]) > 0 and due(redis_db) == []


def test_a_runner_that_dies_mid_publish_loses_nothing(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"])
    assert claim(redis_db, lease_ms=0) == [cid]
    assert claim(redis_db) == [cid]  # the lease ran out: claimed again


def test_delivery_time(redis_db: redis.Redis) -> None:
    [cid] = create(["SN1"])
    assert lua(redis_db, "delivered", cid, "SN2") == 0
    assert lua(redis_db, "delivered", cid, "SN1") == 1
    assert int(state(redis_db, cid)["deliverTime"]) >= int(time.time()) - 1
    assert lua(redis_db, "delivered", "201811260000000009", "SN1") == 0
    assert not redis_db.exists(K.command("201811260000000009", part("201811260000000009")))


def test_cancel(redis_db: redis.Redis) -> None:
    other = next(sn for sn in ("SN2", *(f"SN{i}" for i in range(3, 500))) if K.shard(sn) == P)  # SN2 on one Redis
    [cid, done] = create(["SN1", other], publishNow=False)
    view = with_store(lambda s: s.cancel(int(cid)))
    assert (view["state"], view["reason"]) == (3, "canceled") and view["failedTime"] > 0
    lua(redis_db, "wake", "SN1")
    assert claim(redis_db) == []
    lua(redis_db, "wake", other)
    claim(redis_db)
    record(redis_db, done, "sent")
    respond(redis_db, done, True, clientid=other)
    for cid_, code in ((cid, "conflict"), (done, "conflict"), ("201811260000000009", "not_found")):
        with pytest.raises(AppError) as caught:
            with_store(lambda s, c=cid_: s.cancel(int(c)))  # type: ignore[misc]
        assert caught.value.code == code


def test_pages_newest_first_with_filters_and_totals(redis_db: redis.Redis) -> None:
    b = next(sn for sn in ("B", *(f"B{i}" for i in range(500))) if K.shard(sn) == K.shard("A"))  # "B" on one Redis
    first = create(["A", b], **{"from": "console"})  # one partition: its ids are in the order they were made
    second = create(["A"], **{"from": "script"})
    page = with_store(lambda s: s.page(None, None, 1, 2))
    assert (page["total"], page["count"], page["page"], page["limit"]) == (3, 2, 1, 2)
    assert [i["idStr"] for i in page["list"]] == [second[0], first[1]]
    assert [i["idStr"] for i in with_store(lambda s: s.page(None, None, 2, 2))["list"]] == [first[0]]
    assert with_store(lambda s: s.page("console", None, 1, 10))["total"] == 2
    assert with_store(lambda s: s.page(None, "A", 1, 10))["total"] == 2
    assert [i["idStr"] for i in with_store(lambda s: s.page("console", "A", 1, 10))["list"]] == [first[0]]
    assert with_store(lambda s: s.page("console:A", None, 1, 10))["total"] == 0
    assert with_store(lambda s: s.page("nobody", None, 1, 10))["list"] == []


def test_expiry_takes_the_command_its_answer_and_its_index_entries(redis_db: redis.Redis) -> None:
    [gone] = create(["SN1"], expires=1)
    [kept] = create(["SN1"], expires=60)
    claim(redis_db)
    record(redis_db, gone, "sent")
    respond(redis_db, gone, True)
    assert redis_db.exists(K.command_response(gone, part(gone)))
    wait_for(lambda: not redis_db.exists(K.command(gone, part(gone))), timeout=3, what="the command to expire")
    assert not redis_db.exists(K.command_response(gone, part(gone)))
    page = with_store(lambda s: s.page(None, None, 1, 10))
    assert page["total"] == 1 and [i["idStr"] for i in page["list"]] == [kept]
    assert with_store(lambda s: s.page(None, "SN1", 1, 10))["total"] == 1
    assert redis_db.zcard(K.commands_expiry(P)) == 1 and due(redis_db) == [kept]
    with pytest.raises(AppError) as caught:
        with_store(lambda s: s.get(int(gone)))
    assert caught.value.code == "not_found"
    assert parse_id(kept) is not None


def test_calls_in_one_pipeline_survive_a_flushed_script_cache(redis_db: redis.Redis) -> None:
    """run_many: the calls Redis refused with NOSCRIPT go again once loaded; each call runs once."""
    from adapter.commands import calls

    script_flush(redis_db)
    created = create(["SN1", "SN2"])
    script_flush(redis_db)

    async def go(store: CommandStore) -> list[Any]:
        return await calls.run_many(store.redis, [calls.cancel_call(K, part(created[0]), created[0]),
                                                  calls.cancel_call(K, part(created[1]), created[1]),
                                                  calls.prune_call(K, P, 10)])

    assert with_store(go) == ["canceled", "canceled", 0]
    assert metric_fields(redis_db, K)['commands_finished_total{result="canceled"}'] == 2
