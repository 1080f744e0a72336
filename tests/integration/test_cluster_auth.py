"""Users, logins, the login throttle, metrics and job progress on a real 3-primary Redis Cluster (issue 15):
every MULTI of auth/users.py and every throttle.lua call stays in `{auth}`'s slot, the metrics flush and job
progress in `{meta}`'s. Skipped unless TEST_REDIS_CLUSTER_PORTS names the cluster's ports
(`REDIS_CLUSTER_PORTS=... bash docs/cluster/proto/scripts/ensure-redis-cluster`). Self-contained: a key prefix
of its own, removed from every primary afterwards."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.cluster import RedisCluster as SyncCluster

from adapter.api import health
from adapter.auth.users import Sessions, UserStore
from adapter.errors import AppError
from adapter.http.endpoint import Call
from adapter.jobs import progress
from adapter.settings import Settings
from adapter.store.connections import Services
from adapter.store.keys import Keys
from adapter.store.metrics import MetricsBuffer
from tests.conftest import on_cluster as run_on_cluster

PORTS = os.environ.get("TEST_REDIS_CLUSTER_PORTS", "").split()
pytestmark = pytest.mark.skipif(not PORTS, reason="TEST_REDIS_CLUSTER_PORTS is not set (no Redis Cluster)")
PASSWORD = "cluster-secret-1"


@pytest.fixture
def keys(cluster_prefix: str) -> Keys:
    return Keys(cluster_prefix, cluster_partitions=48)


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({"ADAPTER_REDIS_URL": f"redis://127.0.0.1:{PORTS[0]}" if PORTS else "redis://x",
                              "ADAPTER_LOGIN_MAX_FAILURES": "3"}, dotenv=None)


async def on_cluster(work: Callable[[redis.asyncio.RedisCluster], Awaitable[Any]]) -> Any:
    return await run_on_cluster(work, decode_responses=True)


def test_cluster_is_three_primaries() -> None:
    sync = SyncCluster(host="127.0.0.1", port=int(PORTS[0]))
    try:
        assert len(sync.get_primaries()) == 3
    finally:
        sync.close()


async def test_users_logins_and_tokens(keys: Keys, settings: Settings) -> None:
    async def work(r: Any) -> None:
        users, sessions = UserStore(r, keys), Sessions(r, keys, settings)
        assert await users.ensure_admin(PASSWORD)
        await users.add("bob", "viewer", PASSWORD)
        assert await users.list() == [{"user": "admin", "role": "admin"}, {"user": "bob", "role": "viewer"}]
        with pytest.raises(AppError) as exists:
            await users.add("bob", "viewer", PASSWORD)
        assert exists.value.code == "conflict"

        principal, token = await sessions.login("bob", PASSWORD, "10.0.0.1")
        assert (principal.user, principal.role) == ("bob", "viewer")
        assert await sessions.resolve(token) == principal
        assert await r.ttl(_token_key(keys, token)) > 0
        await sessions.logout(token, principal)
        assert await sessions.resolve(token) is None

        _, first = await sessions.login("bob", PASSWORD, "10.0.0.1")
        _, second = await sessions.login("bob", PASSWORD, "10.0.0.2")
        await users.set_password("bob", "another-secret")  # a new password ends every login
        assert await sessions.resolve(first) is None and await sessions.resolve(second) is None
        _, third = await sessions.login("bob", "another-secret", "10.0.0.1")
        await users.delete("bob")  # removing a user ends its logins
        assert await sessions.resolve(third) is None
        assert await users.list() == [{"user": "admin", "role": "admin"}]
        assert not await r.exists(keys.user("bob"), keys.user_tokens("bob"))

    await on_cluster(work)


def _token_key(keys: Keys, token: str) -> str:
    from adapter.auth.users import digest

    return keys.token(digest(token))


async def test_wrong_passwords_lock_the_name_at_that_address(keys: Keys, settings: Settings) -> None:
    async def work(r: Any) -> list[str]:
        await UserStore(r, keys).add("admin", "admin", PASSWORD)
        sessions = Sessions(r, keys, settings)
        seen = []
        for _ in range(settings.login_max_failures + 1):
            try:
                await sessions.login("admin", "guess-guess", "10.9.9.9")
            except AppError as exc:
                seen.append(exc.code)
        try:
            await sessions.login("admin", PASSWORD, "10.9.9.9")  # the right password, locked all the same
        except AppError as exc:
            seen.append(exc.code)
        await sessions.login("admin", PASSWORD, "10.1.1.1")  # from elsewhere: not locked
        assert await r.hget(keys.login_failures_pair("admin", "10.9.9.9"), "u")
        return seen

    assert await on_cluster(work) == ["unauthorized"] * 3 + ["rate_limited", "rate_limited"]


async def test_metrics_flush_and_read_across_shards(keys: Keys, settings: Settings) -> None:
    async def work(r: Any) -> str:
        buffer = MetricsBuffer()
        buffer.inc('ingest_events_total{type="message"}', 3)
        buffer.observe("GET", "/x", 0.002)
        await buffer.flush(r, keys.metrics())
        await r.hincrby(keys.metrics_in(0), 'ingest_events_total{type="message"}', 4)  # what scripts of two
        await r.hincrby(keys.metrics_in(47), 'ingest_events_total{type="message"}', 5)  # shards add
        svc = Services(settings=settings, keys=keys, redis=r)
        response = await health.metrics(Call(request=None, svc=svc))  # type: ignore[arg-type]
        return bytes(response.body).decode()

    text = await on_cluster(work)
    assert 'ingest_events_total{type="message"} 12\n' in text
    assert 'http_request_duration_seconds_count{method="GET",route="/x"} 1\n' in text


async def test_job_progress(keys: Keys) -> None:
    async def create(r: Any) -> None:
        await progress.create(r, keys, "job-1", "commands", 10, 60)

    await on_cluster(create)
    sync = SyncCluster(host="127.0.0.1", port=int(PORTS[0]), decode_responses=True)
    try:
        progress.step(sync, keys, "job-1", 60, state=progress.JobState.STARTED, done=4)  # type: ignore[arg-type]
        assert progress.done_so_far(sync, keys, "job-1") == 4  # type: ignore[arg-type]
        progress.fail(sync, keys, "job-1", 60, RuntimeError("boom"))  # type: ignore[arg-type]
    finally:
        sync.close()

    async def read(r: Any) -> dict[str, Any] | None:
        return await progress.read(r, keys, "job-1")

    got = await on_cluster(read)
    assert got is not None
    assert (got["state"], got["done"], got["total"], got["error"]) == ("failed", 4, 10, "RuntimeError: boom")
