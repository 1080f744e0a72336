"""The command life cycle in lifecycle.lua on the real Redis, step by step: create, claim, the publish
outcomes, answers, the ack timeout, waking, cancel, expiry and the indexes (docs/commands.md)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from adapter.commands.calls import COMMANDS, mode_call
from adapter.commands.ids import parse_id, partition_of
from adapter.commands.records import CommandStore
from adapter.commands.rules import Limits, parse_request
from adapter.errors import AppError
from adapter.store.keys import Keys
from tests.conftest import async_store_client, metric_fields, script_flush
from tests.support.servers import wait_for

LIMITS = Limits(max_targets=100, body_max_bytes=1024, default_expires=600, max_expires=3600)
T = TypeVar("T")


async def with_store(keys: Keys, fn: Callable[[CommandStore], Awaitable[T]]) -> T:
    client = async_store_client(decode_responses=True)
    try:
        return await fn(CommandStore(client, keys))
    finally:
        await client.aclose()


async def create(keys: Keys, sns: list[str], **fields: Any) -> list[str]:
    req = parse_request({"to": [{"sn": sn} for sn in sns], "command": "sh", "body": {"shcmd": "whoami"},
                         **fields}, LIMITS)
    return [t["idStr"] for t in await with_store(keys, lambda s: s.create(req))]


def part(keys: Keys, cid: str) -> int:
    """The partition a command id carries (0 on one Redis)."""
    return partition_of(int(cid), keys.cluster_partitions)


def lua(keys: Keys, r: redis.Redis, mode: str, *args: Any) -> Any:
    """A call of lifecycle.lua on the partition of SN1's commands (the device most tests send to; 0 on one Redis)."""
    r.script_load(COMMANDS.script)
    c = mode_call(keys, keys.shard("SN1"), mode, *args)
    return r.evalsha(COMMANDS.sha, len(c.keys), *c.keys, *c.args)


def claim(keys: Keys, r: redis.Redis, lease_ms: int = 10_000) -> list[str]:
    reply = lua(keys, r, "claim", 100, lease_ms)
    return [reply[i] for i in range(0, len(reply), 9)]


def record(keys: Keys, r: redis.Redis, cid: str, outcome: str, ack_ms: int = 30_000, at: int = 0,
           send: str | None = None) -> None:
    """A runner's record of one send (`send`: its token; a new one by default, as each publish has)."""
    lua(keys, r, "record", ack_ms, send or uuid.uuid4().hex, cid, outcome, at)


def respond(keys: Keys, r: redis.Redis, cid: str, ok: bool, clientid: str = "SN1", msg: str | None = None) -> str:
    stored = f'{{"id":{cid},"status":"{"ok" if ok else "err"}"}}'
    return str(lua(keys, r, "respond", keys.seen(f"cmd-resp:{msg or time.monotonic_ns()}", "SN1"), 600, cid, clientid,
                   "1" if ok else "0", stored))


UNSET = {"tryTimes": "0", "publishTime": "0", "finishTime": "0", "failedTime": "0", "deliverTime": "0",
         "reason": "", "phase": "", "errors": "0"}  # not written until they change


def state(keys: Keys, r: redis.Redis, cid: str) -> dict[str, str]:
    return {**UNSET, **r.hgetall(keys.command(cid, part(keys, cid)))}


def due(keys: Keys, r: redis.Redis) -> list[str]:
    return r.zrange(keys.commands_due(keys.shard("SN1")), 0, -1)


async def test_publish_now_sent_and_answered(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"])
    assert due(keys, redis_db) == [cid] and state(keys, redis_db, cid)["state"] == "0"
    reply = lua(keys, redis_db, "claim", 10, 10_000)
    assert reply == [cid, "SN1", "iot_web_console", "sh", "", '{"shcmd":"whoami"}', "0", "600", "0"]
    assert claim(keys, redis_db) == []  # leased
    record(keys, redis_db, cid, "sent")
    s = state(keys, redis_db, cid)
    assert (s["state"], s["tryTimes"], s["phase"]) == ("1", "1", "waiting") and int(s["publishTime"]) > 0
    assert redis_db.zscore(keys.commands_due(keys.shard("SN1")), cid) > time.time() * 1000 + 25_000  # the ack timeout
    assert respond(keys, redis_db, cid, True) == "success"
    s = state(keys, redis_db, cid)
    assert (s["state"], s["tryTimes"], s["reason"]) == ("2", "1", "") and int(s["finishTime"]) > 0
    assert due(keys, redis_db) == [] and redis_db.zcard(keys.commands_active("SN1")) == 0
    assert redis_db.get(keys.command_response(cid, part(keys, cid))) == f'{{"id":{cid},"status":"ok"}}'
    assert 590_000 < redis_db.pttl(keys.command_response(cid, part(keys, cid))) <= 600_000
    assert 590_000 < redis_db.pttl(keys.command(cid, part(keys, cid))) <= 600_000


async def test_waiting_for_online(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"], publishNow=False)
    assert due(keys, redis_db) == []
    assert lua(keys, redis_db, "wake", "SN2") == 0 and due(keys, redis_db) == []
    assert lua(keys, redis_db, "wake", "SN1") == 1
    assert claim(keys, redis_db) == [cid]
    record(keys, redis_db, cid, "no_subscribers")
    s = state(keys, redis_db, cid)
    assert (s["state"], s["tryTimes"], s["phase"]) == ("0", "0", "") and due(keys, redis_db) == []
    lua(keys, redis_db, "wake", "SN1")
    assert claim(keys, redis_db) == [cid]


async def test_an_online_device_gets_it_at_once_even_without_publish_now(redis_db: redis.Redis, keys: Keys) -> None:
    redis_db.hset(keys.client("SN1"), mapping={"online": "1"})
    [cid, _] = await create(keys, ["SN1", "SN2"], publishNow=False)
    assert due(keys, redis_db) == [cid]


async def test_coming_online_while_a_send_finds_no_subscriber_sends_again(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"])
    assert claim(keys, redis_db) == [cid]
    lua(keys, redis_db, "wake", "SN1")  # the subscription lands while the publish is in flight
    record(keys, redis_db, cid, "no_subscribers")
    assert claim(keys, redis_db) == [cid]


async def test_failures_resend_until_an_ok(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"], maxRetries=3)
    for answer in ("resend", "resend", "success"):
        assert claim(keys, redis_db) == [cid]
        record(keys, redis_db, cid, "sent")
        assert respond(keys, redis_db, cid, answer == "success") == answer
    s = state(keys, redis_db, cid)
    assert (s["state"], s["tryTimes"]) == ("2", "3")


async def test_failures_exhaust_the_retries(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"], maxRetries=2)
    for answer in ("resend", "failed"):
        assert claim(keys, redis_db) == [cid]
        record(keys, redis_db, cid, "sent")
        assert respond(keys, redis_db, cid, False) == answer
    s = state(keys, redis_db, cid)
    assert (s["state"], s["reason"], s["tryTimes"]) == ("3", "retries_exhausted", "2")
    assert int(s["failedTime"]) > 0


async def test_no_answer_within_the_ack_timeout(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"], maxRetries=2)
    for _ in range(2):
        assert claim(keys, redis_db) == [cid]
        record(keys, redis_db, cid, "sent", ack_ms=0)
    assert claim(keys, redis_db) == []  # the timeout of the last send: no send left
    s = state(keys, redis_db, cid)
    assert (s["state"], s["reason"], s["tryTimes"]) == ("3", "retries_exhausted", "2")
    assert due(keys, redis_db) == []


async def test_max_retries_zero_is_one_send(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"], maxRetries=0)
    claim(keys, redis_db)
    record(keys, redis_db, cid, "sent")
    assert respond(keys, redis_db, cid, False) == "failed"


async def test_broker_errors_back_off_and_count(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"])
    claim(keys, redis_db)
    record(keys, redis_db, cid, "retry", at=int(time.time() * 1000) + 60_000)
    s = state(keys, redis_db, cid)
    assert (s["state"], s["tryTimes"], s["errors"], s["phase"]) == ("0", "0", "1", "")
    assert claim(keys, redis_db) == []
    lua(keys, redis_db, "wake", "SN1")  # coming online cuts the backoff short
    reply = lua(keys, redis_db, "claim", 10, 10_000)
    assert reply[0] == cid and reply[8] == "1"


async def test_rejected_fails(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"])
    claim(keys, redis_db)
    record(keys, redis_db, cid, "rejected")
    s = state(keys, redis_db, cid)
    assert (s["state"], s["reason"]) == ("3", "rejected")
    assert metric_fields(redis_db, keys)['commands_finished_total{result="rejected"}'] == 1


async def test_answers_that_change_nothing(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"], maxRetries=3)
    assert respond(keys, redis_db, cid, True) == "not_sent"
    claim(keys, redis_db)
    record(keys, redis_db, cid, "sent")
    assert respond(keys, redis_db, cid, True, clientid="INTRUDER") == "foreign_client"
    assert respond(keys, redis_db, "201811260000000009", True) == "unknown"
    assert respond(keys, redis_db, cid, False, msg="same") == "resend"
    assert respond(keys, redis_db, cid, False, msg="same") == "duplicate"  # EMQX redelivered the event
    assert respond(keys, redis_db, cid, False) == "stale"  # the device said it twice: one resend only
    assert state(keys, redis_db, cid)["state"] == "1"
    claim(keys, redis_db)
    record(keys, redis_db, cid, "sent")
    assert respond(keys, redis_db, cid, True) == "success"
    assert respond(keys, redis_db, cid, False) == "finished"
    assert state(keys, redis_db, cid)["state"] == "2"
    counted = metric_fields(redis_db, keys)
    for reason in ("not_sent", "foreign_client", "unknown", "duplicate", "stale", "finished"):
        assert counted[f'commands_responses_ignored_total{{reason="{reason}"}}'] == 1


async def test_an_answer_before_the_send_is_recorded(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"])
    claim(keys, redis_db)
    assert respond(keys, redis_db, cid, True) == "success"  # the device was faster than the runner's record
    record(keys, redis_db, cid, "sent")
    s = state(keys, redis_db, cid)
    assert (s["state"], s["tryTimes"]) == ("2", "1") and int(s["publishTime"]) > 0 and due(keys, redis_db) == []


@pytest.mark.parametrize("outcome", ["sent", "retry", "no_subscribers", "rejected"])
async def test_a_record_sent_again_applies_its_send_once(redis_db: redis.Redis, outcome: str, keys: Keys) -> None:
    """The runner sends a record again when Redis failed to answer it (the first may have run): the same send's
    token applies nothing twice, even after the device answered in between; a later send (its own token) counts."""
    [cid] = await create(keys, ["SN1"], maxRetries=5)
    claim(keys, redis_db)
    at = int(time.time() * 1000) + 60_000
    record(keys, redis_db, cid, outcome, at=at, send="send-1")
    first = state(keys, redis_db, cid)
    counted = metric_fields(redis_db, keys)
    record(keys, redis_db, cid, outcome, at=at, send="send-1")
    assert state(keys, redis_db, cid) == first
    assert metric_fields(redis_db, keys) == counted
    if outcome == "sent":
        assert respond(keys, redis_db, cid, True) == "success"
        record(keys, redis_db, cid, "sent", send="send-1")  # a late copy of the first record
        assert state(keys, redis_db, cid)["tryTimes"] == "1"
        record(keys, redis_db, cid, "sent", send="send-2")  # another send: counted (an answer came first)
        assert state(keys, redis_db, cid)["tryTimes"] == "2"


async def test_an_answer_while_the_send_is_in_flight_records_that_send(redis_db: redis.Redis, keys: Keys) -> None:
    """The answer is the truth that the device ran it: the publish must have happened, even when its runner dies
    before recording it (it was 0 tries and publishTime 0 after worker kills)."""
    [cid] = await create(keys, ["SN1"])
    assert claim(keys, redis_db) == [cid]
    assert respond(keys, redis_db, cid, True) == "success"  # and the runner never records its send
    s = state(keys, redis_db, cid)
    assert (s["state"], s["tryTimes"]) == ("2", "1") and int(s["finishTime"]) >= int(s["publishTime"]) > 0
    record(keys, redis_db, cid, "sent")  # or it does, late: counted once
    assert state(keys, redis_db, cid)["tryTimes"] == "1" and due(keys, redis_db) == []


async def test_a_failure_answered_in_flight_resends_once_the_send_is_recorded(redis_db: redis.Redis,
                                                                              keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"], maxRetries=3)
    assert claim(keys, redis_db) == [cid]
    assert respond(keys, redis_db, cid, False) == "resend"
    s = state(keys, redis_db, cid)
    assert (s["state"], s["tryTimes"]) == ("1", "1") and int(s["publishTime"]) > 0
    assert claim(keys, redis_db) == []  # its runner is still on it
    record(keys, redis_db, cid, "retry", at=int(time.time() * 1000) + 60_000)  # EMQX timed out, yet the device got it
    assert (state(keys, redis_db, cid)["tryTimes"], state(keys, redis_db, cid)["errors"]) == ("1", "0")
    assert claim(keys, redis_db) == [cid]  # the resend the answer asked for, at once
    record(keys, redis_db, cid, "sent")
    assert respond(keys, redis_db, cid, True) == "success"
    assert (state(keys, redis_db, cid)["state"], state(keys, redis_db, cid)["tryTimes"]) == ("2", "2")


async def test_a_failure_answered_in_flight_resends_when_its_runner_died(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"], maxRetries=2)
    assert claim(keys, redis_db, lease_ms=0) == [cid]
    assert respond(keys, redis_db, cid, False) == "resend"
    assert respond(keys, redis_db, cid, False) == "stale"  # one resend for one send
    assert claim(keys, redis_db) == [cid]  # the lease ran out: sent again
    record(keys, redis_db, cid, "sent")
    assert respond(keys, redis_db, cid, False) == "failed"
    s = state(keys, redis_db, cid)
    assert (s["state"], s["reason"], s["tryTimes"]) == ("3", "retries_exhausted", "2")


async def test_a_runner_that_dies_mid_publish_loses_nothing(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"])
    assert claim(keys, redis_db, lease_ms=0) == [cid]
    assert claim(keys, redis_db) == [cid]  # the lease ran out: claimed again


async def test_delivery_time(redis_db: redis.Redis, keys: Keys) -> None:
    [cid] = await create(keys, ["SN1"])
    assert lua(keys, redis_db, "delivered", cid, "SN2") == 0
    assert lua(keys, redis_db, "delivered", cid, "SN1") == 1
    assert int(state(keys, redis_db, cid)["deliverTime"]) >= int(time.time()) - 1
    assert lua(keys, redis_db, "delivered", "201811260000000009", "SN1") == 0
    assert not redis_db.exists(keys.command("201811260000000009", part(keys, "201811260000000009")))


async def test_cancel(redis_db: redis.Redis, keys: Keys) -> None:
    # a device of SN1's partition: SN2 on one Redis
    other = next(sn for sn in ("SN2", *(f"SN{i}" for i in range(3, 500))) if keys.shard(sn) == keys.shard("SN1"))
    [cid, done] = await create(keys, ["SN1", other], publishNow=False)
    view = await with_store(keys, lambda s: s.cancel(int(cid)))
    assert (view["state"], view["reason"]) == (3, "canceled") and view["failedTime"] > 0
    lua(keys, redis_db, "wake", "SN1")
    assert claim(keys, redis_db) == []
    lua(keys, redis_db, "wake", other)
    claim(keys, redis_db)
    record(keys, redis_db, done, "sent")
    respond(keys, redis_db, done, True, clientid=other)
    for cid_, code in ((cid, "conflict"), (done, "conflict"), ("201811260000000009", "not_found")):
        with pytest.raises(AppError) as caught:
            await with_store(keys, lambda s, c=cid_: s.cancel(int(c)))  # type: ignore[misc]
        assert caught.value.code == code


async def test_pages_newest_first_with_filters_and_totals(redis_db: redis.Redis, keys: Keys) -> None:
    b = next(sn for sn in ("B", *(f"B{i}" for i in range(500))) if keys.shard(sn) == keys.shard("A"))  # B, one Redis
    first = await create(keys, ["A", b], **{"from": "console"})  # one partition: ids in the order they were made

    second = await create(keys, ["A"], **{"from": "script"})
    page = await with_store(keys, lambda s: s.page(None, None, 1, 2))
    assert (page["total"], page["count"], page["page"], page["limit"]) == (3, 2, 1, 2)
    assert [i["idStr"] for i in page["list"]] == [second[0], first[1]]
    assert [i["idStr"] for i in (await with_store(keys, lambda s: s.page(None, None, 2, 2)))["list"]] == [first[0]]
    assert (await with_store(keys, lambda s: s.page("console", None, 1, 10)))["total"] == 2
    assert (await with_store(keys, lambda s: s.page(None, "A", 1, 10)))["total"] == 2
    assert [i["idStr"] for i in (await with_store(keys, lambda s: s.page("console", "A", 1, 10)))["list"]] == [first[0]]
    assert (await with_store(keys, lambda s: s.page("console:A", None, 1, 10)))["total"] == 0
    assert (await with_store(keys, lambda s: s.page("nobody", None, 1, 10)))["list"] == []


async def test_expiry_takes_the_command_its_answer_and_its_index_entries(redis_db: redis.Redis, keys: Keys) -> None:
    [gone] = await create(keys, ["SN1"], expires=1)
    [kept] = await create(keys, ["SN1"], expires=60)
    claim(keys, redis_db)
    record(keys, redis_db, gone, "sent")
    respond(keys, redis_db, gone, True)
    assert redis_db.exists(keys.command_response(gone, part(keys, gone)))
    wait_for(lambda: not redis_db.exists(keys.command(gone, part(keys, gone))), timeout=3, what="the command to expire")
    assert not redis_db.exists(keys.command_response(gone, part(keys, gone)))
    page = await with_store(keys, lambda s: s.page(None, None, 1, 10))
    assert page["total"] == 1 and [i["idStr"] for i in page["list"]] == [kept]
    assert (await with_store(keys, lambda s: s.page(None, "SN1", 1, 10)))["total"] == 1
    assert redis_db.zcard(keys.commands_expiry(keys.shard("SN1"))) == 1 and due(keys, redis_db) == [kept]
    with pytest.raises(AppError) as caught:
        await with_store(keys, lambda s: s.get(int(gone)))
    assert caught.value.code == "not_found"
    assert parse_id(kept) is not None


async def test_calls_in_one_pipeline_survive_a_flushed_script_cache(redis_db: redis.Redis, keys: Keys) -> None:
    """run_many: the calls Redis refused with NOSCRIPT go again once loaded; each call runs once."""
    from adapter.commands import calls

    script_flush(redis_db)
    created = await create(keys, ["SN1", "SN2"])
    script_flush(redis_db)

    async def go(store: CommandStore) -> list[Any]:
        return await calls.run_many(store.redis, [calls.cancel_call(keys, part(keys, created[0]), created[0]),
                                                  calls.cancel_call(keys, part(keys, created[1]), created[1]),
                                                  calls.prune_call(keys, keys.shard("SN1"), 10)])

    assert await with_store(keys, go) == ["canceled", "canceled", 0]
    assert metric_fields(redis_db, keys)['commands_finished_total{result="canceled"}'] == 2
