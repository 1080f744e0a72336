"""Fixtures for every layer: settings on a dedicated Redis database, a live app, an admin token."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
import redis

from adapter.app import create_app
from adapter.settings import Settings
from tests.support.servers import serve

REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
TEST_DB = int(os.environ.get("TEST_REDIS_DB", "15"))
ADMIN_PASSWORD = "admin-secret-1"
INGEST_TOKEN = "ingest-secret"


def redis_url(db: int = TEST_DB) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """The real Redis, on the test database, flushed before and after."""
    client = redis.Redis.from_url(redis_url(), decode_responses=True)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.fail(f"Redis does not answer at {redis_url()} (make test starts one)")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings(redis_db: redis.Redis) -> Settings:
    return Settings.from_env({
        "ADAPTER_REDIS_URL": redis_url(),
        "ADAPTER_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ADAPTER_INGEST_TOKEN": INGEST_TOKEN,
        "ADAPTER_EMQX_API_URL": "http://127.0.0.1:9/api/v5",
    }, dotenv=None)


@pytest.fixture
def live(settings: Settings) -> Iterator[str]:
    """Base URL of the app under a real uvicorn server."""
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture
def client(live: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live, timeout=10) as c:
        yield c


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
