"""The command runner against the real Redis and a fake EMQX on loopback: bulk publishing, 202, 503 and
an unreachable broker retried with backoff, a bulk 400 narrowed down to its culprit, and how fast a
`publishNow` command goes out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis

from adapter.broker.client import EmqxClient
from adapter.commands import calls
from adapter.commands.ids import partition_of
from adapter.commands.records import CommandStore
from adapter.commands.rules import Limits, parse_request
from adapter.commands.runner import SCRIPT_ROWS, CommandRunner
from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from tests.conftest import metric_fields
from tests.support.fake_emqx import KEY, SECRET, FakeEmqx
from tests.support.servers import serve


class Emqx(FakeEmqx):
    """Answers per device: `statuses[sn]` is a list of HTTP statuses to give in turn (then 200)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[str, list[int]] = {}
        self.bulk_sizes: list[int] = []

    def _answer(self, message: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # type: ignore[override]
        sn = message["topic"].removeprefix("dma/cmd/")
        queue = self.statuses.get(sn) or [200]
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        return status, {200: {"id": "00061A4C2B1E5F3AF4420000030F0003"},
                        202: {"reason_code": 16, "message": "no_matching_subscribers"},
                        400: {"reason_code": 151, "message": "packet_too_large"},
                        503: {"reason_code": 131, "message": "failed_to_dispatch"}}[status]

    async def bulk(self, request: Any) -> Any:
        self.bulk_sizes.append(len(orjson.loads(await request.body())))
        return await super().bulk(request)


Fake = tuple[Emqx, str]


@pytest.fixture
def emqx() -> Iterator[Fake]:
    fake = Emqx()
    with serve(fake.app()) as url:
        yield fake, url


@pytest.fixture
def cfg(settings: Settings, emqx: Fake) -> Settings:
    return settings.with_overrides(emqx_api_url=f"{emqx[1]}/api/v5", emqx_api_key=KEY, emqx_api_secret=SECRET,
                                   command_retry_schedule="0.1s", command_publish_batch=250,
                                   command_publish_concurrency=2, emqx_timeout=1.0)


async def run(cfg: Settings, sns: list[str], until: Callable[[redis.Redis], bool], r: redis.Redis,
              timeout: float = 5.0, **fields: Any) -> tuple[list[str], float]:
    """Create commands, then run a runner until `until` holds; answers the ids and the seconds it took."""
    client = async_redis(cfg)
    emqx = EmqxClient.from_settings(cfg)
    runner = CommandRunner(cfg, client, emqx)
    try:
        req = parse_request({"to": [{"sn": sn} for sn in sns], "command": "sh", **fields}, Limits.of(cfg))
        ids = [t["idStr"] for t in await CommandStore(client, Keys.of(cfg)).create(req)]
        started = time.perf_counter()
        while not until(r):
            assert time.perf_counter() - started < timeout, "the runner did not get there in time"
            if not await runner.step():
                await asyncio.sleep(0.02)
        took = time.perf_counter() - started
        await asyncio.gather(*runner.inflight)
        return ids, took
    finally:
        await emqx.aclose()
        await client.aclose()


def part(cid: str, keys: Keys) -> int:
    """The partition a command id carries (0 on one Redis)."""
    return partition_of(int(cid), keys.cluster_partitions)


def states(r: redis.Redis, ids: list[str], keys: Keys) -> list[tuple[str, str]]:
    return [(r.hget(keys.command(i, part(i, keys)), "state") or "",
             r.hget(keys.command(i, part(i, keys)), "tryTimes") or "0") for i in ids]


def all_sent(ids_count: int, keys: Keys) -> Callable[[redis.Redis], bool]:
    return lambda r: metric_fields(r, keys).get('commands_sends_total{outcome="sent"}') == ids_count


async def test_publish_now_goes_out_at_once_in_the_documented_shape(cfg: Settings, emqx: Fake, redis_db: redis.Redis,
                                                                    keys: Keys) -> None:
    fake, _ = emqx
    [cid], took = await run(cfg, ["SN1"], all_sent(1, keys), redis_db, body={"shcmd": "whoami"}, detached=True)
    assert took < 0.5
    [message] = fake.published
    assert (message["topic"], message["qos"], message["retain"]) == ("dma/cmd/SN1", 1, False)
    payload = orjson.loads(message["payload"])
    assert payload.pop("time") >= int(time.time()) - 5
    assert payload == {"id": int(cid), "from": "iot_web_console", "command": "sh", "method": "",
                       "d": {"shcmd": "whoami"}, "detached": True, "expires": cfg.command_default_expires}
    assert states(redis_db, [cid], keys) == [("1", "1")]


async def test_many_commands_go_out_in_bulk_chunks(cfg: Settings, emqx: Fake, redis_db: redis.Redis,
                                                   keys: Keys) -> None:
    fake, _ = emqx
    sns = [f"SN{i:04d}" for i in range(600)]
    ids, _ = await run(cfg, sns, all_sent(600, keys), redis_db)
    assert sum(fake.bulk_sizes) == 600 and max(fake.bulk_sizes) <= cfg.command_publish_batch
    if not keys.cluster:  # one partition claims them in full batches (the cluster's partitions split the room)
        assert sorted(fake.bulk_sizes, reverse=True) == [250, 250, 100]
    assert {m["topic"] for m in fake.published} == {f"dma/cmd/{sn}" for sn in sns}
    assert set(states(redis_db, ids, keys)) == {("1", "1")}


async def test_claims_and_records_go_script_rows_at_a_time(cfg: Settings, emqx: Fake, redis_db: redis.Redis,
                                                             keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another client's call (an API read) waits behind one short script call, never a long one: a 250-command
    publish batch is claimed and recorded SCRIPT_ROWS commands a call, all of them once."""
    asked: list[int] = []
    recorded: list[int] = []
    claim, record = calls.claim_call, calls.record_call
    monkeypatch.setattr(calls, "claim_call", lambda k, p, n, lease: asked.append(n) or claim(k, p, n, lease))
    monkeypatch.setattr(calls, "record_call", lambda k, p, ack, send, group: recorded.append(len(group))
                        or record(k, p, ack, send, group))
    ids, _ = await run(cfg, [f"SN{i:04d}" for i in range(600)], all_sent(600, keys), redis_db)
    assert 0 < max(asked) <= SCRIPT_ROWS and 0 < max(recorded) <= SCRIPT_ROWS, (asked, recorded)
    assert sum(recorded) == 600 and set(states(redis_db, ids, keys)) == {("1", "1")}


async def test_no_subscriber_waits_for_online(cfg: Settings, emqx: Fake, redis_db: redis.Redis, keys: Keys) -> None:
    fake, _ = emqx
    fake.statuses["OFF"] = [202]
    ids, _ = await run(cfg, ["ON", "OFF"], lambda r: all_sent(1, keys)(r) and bool(
        metric_fields(r, keys).get('commands_sends_total{outcome="no_subscribers"}')), redis_db)
    assert states(redis_db, ids, keys) == [("1", "1"), ("0", "0")]
    assert redis_db.zscore(keys.commands_due(part(ids[1], keys)), ids[1]) is None
    assert redis_db.zscore(keys.commands_active("OFF"), ids[1]) is not None


async def test_broker_errors_are_retried_with_backoff(cfg: Settings, emqx: Fake,
                                                      redis_db: redis.Redis, keys: Keys) -> None:
    fake, _ = emqx
    fake.statuses["SN1"] = [503, 503, 200]
    [cid], took = await run(cfg, ["SN1"], all_sent(1, keys), redis_db)
    assert took >= 0.15  # two waits of ~0.1 s
    assert metric_fields(redis_db, keys)['commands_sends_total{outcome="retry"}'] == 2
    assert states(redis_db, [cid], keys) == [("1", "1")]


async def test_an_unreachable_broker_is_retried(cfg: Settings, emqx: Fake, redis_db: redis.Redis, keys: Keys) -> None:
    fake, _ = emqx
    fake.status = 500

    def heal(r: redis.Redis) -> bool:
        if metric_fields(r, keys).get('commands_sends_total{outcome="retry"}'):
            fake.status = None
        return all_sent(1, keys)(r)

    [cid], _ = await run(cfg, ["SN1"], heal, redis_db)
    assert states(redis_db, [cid], keys) == [("1", "1")]


async def test_a_bulk_400_is_narrowed_down_to_its_culprit(cfg: Settings, emqx: Fake,
                                                          redis_db: redis.Redis, keys: Keys) -> None:
    fake, _ = emqx
    fake.statuses["BIG"] = [400]
    ids, _ = await run(cfg, ["A", "BIG", "C"], all_sent(2, keys), redis_db)
    assert states(redis_db, ids, keys) == [("1", "1"), ("3", "0"), ("1", "1")]
    assert redis_db.hget(keys.command(ids[1], part(ids[1], keys)), "reason") == "rejected"


async def test_a_due_member_that_is_no_command_id_does_not_stop_the_runner(cfg: Settings, emqx: Fake,
                                                                           redis_db: redis.Redis, keys: Keys) -> None:
    """Once a crash: `int("abc")` on a claimed row ended the runner's loop. Now the script drops it."""
    p = keys.shard("SN1")  # the partition the runner claims SN1's command in, and these with it
    redis_db.zadd(keys.commands_due(p), {"abc": 0, "20181126x0000000001": 0})
    redis_db.hset(keys.command("abc", p), mapping={"state": "0", "expireAt": str(2**50), "sn": "SN1"})
    ids, _ = await run(cfg, ["SN1"], all_sent(1, keys), redis_db)
    assert states(redis_db, ids, keys) == [("1", "1")]
    assert redis_db.zscore(keys.commands_due(p), "abc") is None
    assert redis_db.zscore(keys.commands_due(p), "20181126x0000000001") is None
