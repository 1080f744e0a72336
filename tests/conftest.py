"""Fixtures for every layer: settings on a dedicated Redis store, a live app, an admin token.

Two backends (TEST_REDIS_MODE): `single` (the default) is one Redis, database TEST_REDIS_DB, flushed before and
after each test, key prefix `iot`. `cluster` is a Redis Cluster (TEST_REDIS_CLUSTER_PORTS, `make redis-cluster`):
it has only database 0, so each test gets its own key prefix (ADAPTER_KEY_PREFIX) and its keys are removed from
every primary after it (SCAN MATCH prefix* + UNLINK); RQ runs on the single test Redis (ADAPTER_RQ_REDIS_URL,
database TEST_RQ_DB).
Tests that need a Redis of their own or one Redis's features are marked `single_redis` (skipped on the cluster);
modules whose subject does not depend on the key layout (an HTTP client, EMQX's REST API, static files) are marked
`layout_free` and run in the one-Redis pass only.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from anyio import open_file  # noqa: F401  (imported here, not lazily in a server thread: see below)
from argon2 import PasswordHasher
from hypothesis import settings as hypothesis_settings

from adapter.auth import users
from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from tests.support.servers import serve_api

REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
TEST_DB = int(os.environ.get("TEST_REDIS_DB", "15"))
RQ_DB = int(os.environ.get("TEST_RQ_DB", "14"))  # RQ's database on the single test Redis, in cluster mode

# Passwords and device secrets hashed with argon2id at its lowest cost in the tests' own processes: the shipped
# cost (about 140 ms of CPU and 64 MiB a hash) paid by every app a test starts (its admin) and every login came to
# minutes of CPU a `make test`. Hashes still say `$argon2id$`, and the processes tests start (`adapter api`,
# `adapter worker`) keep the shipped cost.
users._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
users._DUMMY_HASH = users._hasher.hash("dummy-password")
# anyio imports its file helpers lazily, the first time a static file is served: in a server thread, where that
# import went through pytest's assertion rewriter (anyio is a pytest plugin) while the main thread parsed a module
# too, and CPython 3.11 failed it ("AST constructor recursion depth mismatch": the docs page's bundle a 500). The
# import above makes it once, in the main thread.
MODE = os.environ.get("TEST_REDIS_MODE", "single")
CLUSTER = MODE == "cluster"
CLUSTER_PORTS = [int(p) for p in os.environ.get("TEST_REDIS_CLUSTER_PORTS", "7001 7002 7003").split()]
ADMIN_PASSWORD = "admin-secret-1"

# Property tests without a per-example deadline (a loaded 2-core CI machine runs three passes side by side and
# a 200 ms deadline fails on the scheduler, not on the code) and derandomized (the same examples every run).
hypothesis_settings.register_profile("project", deadline=None, derandomize=True, print_blob=True)
hypothesis_settings.load_profile("project")

# scripts/test-passes starts each pass as a background job, which a shell without job control starts with SIGINT
# ignored, and every process a test starts would inherit that: restored, so a test's Ctrl-C reaches its children
signal.signal(signal.SIGINT, signal.default_int_handler)
INGEST_TOKEN = "ingest-secret"
if MODE not in ("single", "cluster"):
    raise pytest.UsageError(f"TEST_REDIS_MODE must be single or cluster, not {MODE!r}")


def redis_url(db: int = TEST_DB) -> str:
    """The store's URL: the single test Redis (database `db`), or the test cluster (`redis+cluster://`)."""
    if CLUSTER:
        return f"redis+cluster://{REDIS_HOST}:{CLUSTER_PORTS[0]}/0"
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def rq_url() -> str:
    """RQ's Redis: the single test Redis (the store's own database on one Redis, TEST_RQ_DB in cluster mode, so
    that a cluster run and a single run can share one redis-server)."""
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{RQ_DB if CLUSTER else TEST_DB}"


def new_prefix() -> str:
    """The key prefix of one test: `iot` on one Redis (its own database isolates it), unique on the cluster."""
    return f"t{uuid.uuid4().hex[:8]}" if CLUSTER else "iot"


def store_env(prefix: str, db: int = TEST_DB) -> dict[str, str]:
    """The environment that points settings (or a subprocess) at the test store under `prefix`."""
    env = {"ADAPTER_REDIS_URL": redis_url(db)}
    if CLUSTER:
        env |= {"ADAPTER_KEY_PREFIX": prefix, "ADAPTER_RQ_REDIS_URL": rq_url()}
    return env


def keys_for(prefix: str) -> Keys:
    """The keys of the test store under `prefix`: what `Keys.of` gives for settings of `store_env(prefix)` (the
    default partitions). For a module's own prefix (`PREFIX = new_prefix()`); a test spells its keys with the
    `keys` fixture."""
    return Keys(prefix, Settings.cluster_partitions if CLUSTER else 0, Settings.delivery_partitions)


def enable_callbacks(client: redis.Redis, keys: Keys, cb_type: str, *ids: str) -> None:
    """Plant enabled callbacks as the callbacks store leaves them: the authoritative set and, on the cluster, its
    per-shard replicas the device scripts read (`callbacks_enabled_in`: the same key on one Redis)."""
    client.sadd(keys.callbacks_enabled_of(cb_type), *ids)
    for p in keys.shards() if keys.cluster else ():
        client.sadd(keys.callbacks_enabled_in(cb_type, p), *ids)


def zall(client: redis.Redis, keys: Keys, key_of: Callable[[int], str]) -> list[Any]:
    """The members of a sharded sorted set (`key_of(p)` for each of `keys.shards()`: the index shards) in ZRANGE
    order, by score then member: the one key on one Redis, merged over the shards on the cluster."""
    pairs = [pair for p in keys.shards() for pair in client.zrange(key_of(p), 0, -1, withscores=True)]
    return [member for member, _ in sorted(pairs, key=lambda pair: (pair[1], pair[0]))]


def metric_fields(client: redis.Redis, keys: Keys) -> dict[str, float]:
    """Every counter as `GET /metrics` sums it: `metrics()` and, on the cluster, each shard's `metrics_in(p)` the
    scripts count in (the same key on one Redis)."""
    out: dict[str, float] = {}
    for key in dict.fromkeys([keys.metrics(), *(keys.metrics_in(p) for p in keys.shards())]):
        for field, n in client.hgetall(key).items():
            name = field.decode() if isinstance(field, bytes) else field
            out[name] = out.get(name, 0) + float(n)  # counters, and sums of seconds
    return out


def store_client(db: int = TEST_DB, **options: Any) -> redis.Redis:
    """A sync client of the test store (a RedisCluster on the cluster; typed as redis.Redis for the tests)."""
    if CLUSTER:
        return redis.cluster.RedisCluster(host=REDIS_HOST, port=CLUSTER_PORTS[0], **options)  # type: ignore[return-value]
    return redis.Redis.from_url(redis_url(db), **options)


def async_store_client(db: int = TEST_DB, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client of the test store (a RedisCluster on the cluster)."""
    if CLUSTER:
        return redis.asyncio.cluster.RedisCluster(host=REDIS_HOST, port=CLUSTER_PORTS[0],  # type: ignore[return-value]
                                                  **options)
    return redis.asyncio.Redis.from_url(redis_url(db), **options)


def primaries(client: redis.Redis) -> list[redis.Redis]:
    """A client of each primary (`client` itself on one Redis)."""
    if isinstance(client, redis.cluster.RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def flush_store(client: redis.Redis, prefix: str) -> None:
    """Empty the test store: FLUSHDB on one Redis; on the cluster every key under `prefix`, on every primary, and
    RQ's database on the single test Redis."""
    if not isinstance(client, redis.cluster.RedisCluster):
        client.flushdb()
        return
    unlink_prefix(client, prefix)
    with redis.Redis.from_url(rq_url()) as rq:
        rq.flushdb()


def unlink_prefix(client: redis.cluster.RedisCluster, prefix: str) -> None:
    """Every key under `prefix` on every primary of the cluster."""
    for node in client.get_primaries():
        own = client.get_redis_connection(node)  # that primary's own client: SCAN sees its keys only
        for key in own.scan_iter(match=f"{prefix}*", count=1000):
            own.unlink(key)  # one key per call: keys of one batch may be in many slots


@pytest.fixture
def cluster_prefix() -> Iterator[str]:
    """A key prefix of its own on the test cluster (the cluster tests' store), its keys removed afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.cluster.RedisCluster(host=REDIS_HOST, port=CLUSTER_PORTS[0])
    try:
        unlink_prefix(client, f"{name}:")
    finally:
        client.close()


async def on_cluster(work: Callable[[Any], Awaitable[Any]], **options: Any) -> Any:
    """Await `work` with an asyncio client of the test cluster (`options` for RedisCluster), closed afterwards."""
    client = redis.asyncio.cluster.RedisCluster(host=REDIS_HOST, port=CLUSTER_PORTS[0], **options)
    try:
        return await work(client)
    finally:
        await client.aclose()


def script_flush(client: redis.Redis) -> None:
    """SCRIPT FLUSH everywhere scripts are cached (every primary of the cluster)."""
    for node in primaries(client):
        node.script_flush()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not CLUSTER:
        return
    skip = pytest.mark.skip(reason="one Redis only (TEST_REDIS_MODE=cluster)")
    once = pytest.mark.skip(reason="layout-free: runs in the one-Redis pass only")
    for item in items:
        if item.get_closest_marker("single_redis") is not None:
            item.add_marker(skip)
        elif item.get_closest_marker("layout_free") is not None:
            item.add_marker(once)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """The event loop of every `async def` test and fixture (anyio's pytest plugin, `anyio_mode = "auto"` in
    pyproject.toml): asyncio, the service's own, once (the plugin's default would run each on trio too)."""
    return "asyncio"


@pytest.fixture
def key_prefix() -> str:
    return new_prefix()


@pytest.fixture(scope="module")
def module_prefix() -> str:
    """The key prefix of a module's own app (a module-scoped server: one login for the module), for a module that
    also returns it from `key_prefix` so that `settings` and `keys` follow it."""
    return new_prefix()



@pytest.fixture
def redis_db(key_prefix: str) -> Iterator[redis.Redis]:
    """The real Redis (or cluster), on the test store, emptied before and after."""
    client = store_client(decode_responses=True)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis does not answer at {redis_url()} (make test starts one; make redis-cluster the cluster)")
    flush_store(client, key_prefix)
    yield client
    flush_store(client, key_prefix)
    client.close()


@pytest.fixture
def settings(redis_db: redis.Redis, key_prefix: str) -> Settings:
    return Settings.from_env({
        **store_env(key_prefix),
        "ADAPTER_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ADAPTER_INGEST_TOKEN": INGEST_TOKEN,
        "ADAPTER_EMQX_API_URL": "http://127.0.0.1:9/api/v5",
    }, dotenv=None)


@pytest.fixture
async def aredis(settings: Settings) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client of the test's store as the service makes one (`async_redis(settings)`), closed after: for
    `async def` tests that drive the service's stores and scripts directly."""
    client = async_redis(settings)
    yield client
    await client.aclose()


@pytest.fixture
def keys(settings: Settings) -> Keys:
    """The keys of the test's settings (its prefix; on the cluster, its partitions): what tests should spell keys
    with, rather than a module-level `Keys("iot")`, to run on both backends."""
    return Keys.of(settings)


@pytest.fixture
def live(settings: Settings) -> Iterator[str]:
    """Base URL of the app under a real uvicorn server, with the protocol `adapter api` runs it with."""
    with serve_api(settings) as url:
        yield url


@pytest.fixture
def client(live: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live, timeout=10) as c:
        yield c


def ok(r: httpx.Response) -> Any:
    """The data of a 200 answer in the success envelope (the test fails on anything else)."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    return body["data"]


def login(client: httpx.Client, user: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    r = client.post("/iot/api/v1/auth/login", json={"user": user, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["token"])


@pytest.fixture
def admin(client: httpx.Client) -> httpx.Client:
    """The client, logged in as admin."""
    client.headers["Authorization"] = f"Bearer {login(client)}"
    return client


@pytest.fixture
def ingest(client: httpx.Client) -> Iterator[httpx.Client]:
    """The client, with the ingest token (for `POST /emqx/events`)."""
    client.headers["Authorization"] = f"Bearer {INGEST_TOKEN}"
    yield client
