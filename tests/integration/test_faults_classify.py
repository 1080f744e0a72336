"""adapter/store/faults.py against the errors a real redis-server gives in each fault (docs/reliability.md), and the
redis-py connection-reset races (up to 8.1 an AttributeError raised inside redis-py, not a RedisError)."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from types import SimpleNamespace

import pytest
import redis
import redis.asyncio

from adapter.store import faults
from tests.support.redis_faults import redis_server

pytestmark = pytest.mark.single_redis
SCRIPT = "redis.call('SET', KEYS[1], 'x') return 1"


def raised(call: object) -> BaseException:
    try:
        call()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


def test_refusals_of_a_real_redis_are_trouble_and_bugs_are_not() -> None:
    with redis_server() as server:
        r = redis.Redis(port=server.port)
        sha = r.script_load(SCRIPT)
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", 1)
        oom = [raised(lambda: r.evalsha(sha, 1, "k")), raised(lambda: r.set("a", "b"))]
        r.config_set("maxmemory", 0)
        r.replicaof("127.0.0.1", 1)  # demoted: a primary that never answers
        readonly = [raised(lambda: r.evalsha(sha, 1, "k")), raised(lambda: r.set("a", "b"))]
        r.replicaof("NO", "ONE")
        r.set("probe", 1)  # a string: HSET on it is WRONGTYPE
        busy_script = redis.Redis(port=server.port, socket_timeout=30)
        spinner = threading.Thread(target=raised, args=(lambda: busy_script.eval("while true do end", 0),))
        spinner.start()
        deadline = time.monotonic() + 10
        busy: BaseException | None = None
        while busy is None and time.monotonic() < deadline:
            try:
                r.get("probe")
            except redis.exceptions.ResponseError as exc:
                busy = exc
        r.script_kill()
        spinner.join(10)
        wrong = raised(lambda: r.hset("probe", "f", "v"))  # WRONGTYPE: a bug of the caller
        script_error = raised(lambda: r.eval("return redis.call('NOSUCH')", 0))
        data_error = raised(lambda: r.set("a", {"a": 1}))  # type: ignore[arg-type]
        r.close()
        busy_script.close()
    for exc in [*oom, *readonly]:
        assert faults.trouble(exc), exc
    assert busy is not None and faults.trouble(busy) and str(busy).startswith("BUSY")
    assert not faults.connection_lost(oom[0])
    assert all(faults.connection_lost(exc) for exc in readonly)
    for exc in (wrong, script_error, data_error):
        assert not faults.trouble(exc), exc
    refused = raised(lambda: redis.Redis(port=server.port, socket_connect_timeout=1).ping())  # the server is gone
    assert faults.trouble(refused) and faults.connection_lost(refused)


async def reset_race() -> BaseException:
    """What redis-py raises when it writes to a connection a concurrent disconnect has just let go: up to 8.1 an
    AttributeError (`'NoneType' object has no attribute 'writelines'`, redis/redis-py #3546, #4287), from 8.2 a
    ConnectionError."""
    conn = redis.asyncio.Connection(port=1)
    conn._writer = None  # what a concurrent disconnect leaves
    try:
        await conn._send_packed_command([b"PING"])
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


def attribute_error_in_redis_py() -> BaseException:
    """An AttributeError raised in redis-py's own connection code (the shape of the reset races it still has)."""
    return raised(lambda: redis.asyncio.Connection.is_connected.fget(SimpleNamespace()))  # type: ignore[attr-defined]


async def test_a_connection_reset_under_redis_py_is_trouble_but_our_own_attribute_error_is_not() -> None:
    race = await reset_race()
    assert isinstance(race, AttributeError | redis.exceptions.ConnectionError), race
    assert faults.trouble(race) and faults.connection_lost(race)
    inside = attribute_error_in_redis_py()
    assert isinstance(inside, AttributeError) and faults.trouble(inside) and faults.connection_lost(inside)
    ours = raised(lambda: None.writelines)  # type: ignore[attr-defined]
    assert isinstance(ours, AttributeError) and not faults.trouble(ours)
    assert not faults.trouble(ValueError("x")) and not faults.trouble(RuntimeError("x"))


async def test_a_broken_connection_is_told_from_answers_and_timeouts() -> None:
    """What the batchers send once more on a fresh connection: the connection failing under a call, not Redis
    answering (LOADING, READONLY) and not a timeout (the call may still run)."""
    async def closed_by_server() -> BaseException:
        with redis_server() as server:
            client = redis.asyncio.Redis(port=server.port)
            await client.ping()
            conn = client.connection_pool._available_connections[0]  # pooled, idle
            server.client.client_kill_filter(_type="normal", skipme=True)
            wait_for_eof = time.monotonic() + 5
            while not conn._reader.at_eof() and time.monotonic() < wait_for_eof:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
            try:
                await conn.send_command("PING")
                await conn.read_response()
            except BaseException as exc:
                return exc
            finally:
                await client.aclose()
        raise AssertionError("no error")

    closed = await closed_by_server()
    assert isinstance(closed, redis.exceptions.ConnectionError) and faults.connection_broken(closed), closed

    assert faults.connection_broken(await reset_race()) and faults.connection_broken(attribute_error_in_redis_py())
    assert faults.connection_broken(ConnectionResetError()) and faults.connection_broken(BrokenPipeError())
    for not_broken in (redis.exceptions.BusyLoadingError("LOADING"), redis.exceptions.TimeoutError("read"),
                       TimeoutError(), redis.exceptions.ReadOnlyError("READONLY"),
                       redis.exceptions.AuthenticationError("auth"), ValueError("x")):
        assert not faults.connection_broken(not_broken), not_broken


async def test_a_refusal_inside_a_pipeline_is_trouble_on_either_client() -> None:
    """redis-py puts `Command # 1 (…) of pipeline caused error: ` before a pipelined command's answer (the asyncio
    client the answer's args tuple), so its first word is no longer the code: MISCONF in a MULTI (what rq's
    register_death sends) and in a plain pipeline, from both clients; a WRONGTYPE in a pipeline stays a bug."""
    with redis_server("--save", "3600 1", "--stop-writes-on-bgsave-error", "yes") as server:
        r = redis.Redis(port=server.port)
        r.set("probe", 1)
        wrong = raised(lambda: r.pipeline().hset("probe", "f", "v").execute())
        shutil.rmtree(server.dir)
        r.bgsave()
        deadline = time.monotonic() + 10
        while r.info("persistence")["rdb_last_bgsave_status"] != "err" and time.monotonic() < deadline:
            time.sleep(0.02)
        in_multi = raised(lambda: r.pipeline(transaction=True).srem("s", "a").hset("h", "f", "v").execute())
        piped = raised(lambda: r.pipeline(transaction=False).set("a", 1).execute())

        async def from_asyncio() -> BaseException:
            client = redis.asyncio.Redis(port=server.port)
            try:
                async with client.pipeline(transaction=False) as pipe:
                    await pipe.set("a", 1).execute()
            except BaseException as exc:
                return exc
            finally:
                await client.aclose()
            raise AssertionError("no error")

        async_piped = await from_asyncio()
        r.close()
    for exc in (in_multi, piped, async_piped):
        assert "MISCONF" in str(exc) and faults.trouble(exc), exc
    assert "WRONGTYPE" in str(wrong) and not faults.trouble(wrong), wrong


def test_a_refusal_inside_a_pipeline_is_trouble_too() -> None:
    """redis-py prefixes an error reply in a pipeline with the command (`Command # 1 (ZADD …) of pipeline caused
    error: …`): the code is still read."""
    with redis_server() as server:
        r = redis.Redis(port=server.port)
        r.replicaof("127.0.0.1", 1)
        r.config_set("replica-read-only", "yes")
        with r.pipeline(transaction=False) as pipe:
            pipe.zadd("z", {"a": 1})
            readonly = raised(pipe.execute)
        r.replicaof("NO", "ONE")
        spinner = redis.Redis(port=server.port, socket_timeout=30)
        thread = threading.Thread(target=raised, args=(lambda: spinner.eval("while true do end", 0),))
        thread.start()
        deadline = time.monotonic() + 10
        busy: BaseException | None = None
        while busy is None and time.monotonic() < deadline:
            with r.pipeline(transaction=False) as pipe:
                pipe.zadd("z", {"a": 1})
                try:
                    pipe.execute()
                except redis.exceptions.ResponseError as exc:
                    busy = exc
        r.script_kill()
        thread.join(10)
        spinner.close()
        with r.pipeline(transaction=False) as pipe:
            pipe.set("s", 1)
            pipe.hset("s", "f", "v")  # WRONGTYPE
            wrong = raised(pipe.execute)
        r.close()
    assert busy is not None and "of pipeline caused error" in str(busy), busy
    assert faults.trouble(busy) and faults.trouble(readonly)
    assert not faults.trouble(wrong)


def test_a_transaction_short_of_its_replies_is_trouble() -> None:
    """RQ's register_death (MULTI/EXEC) as OOM began or ended: redis-py found fewer replies than it queued
    (seen in test_worker_faults[oom]: the worker exited 1 from its teardown)."""
    short = redis.exceptions.ResponseError("Wrong number of response items from pipeline execution")
    assert faults.trouble(short)
    assert not faults.trouble(redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong "
                                                             "kind of value"))
