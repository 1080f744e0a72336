"""Device credentials through the real app and the real Redis: the secret is shown once and stored only as
an argon2id hash, lists never carry secrets, revoking removes, and only admins write."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import login, ok
from tests.integration.test_api_envelope import assert_err
from tests.integration.test_auth import add_user
from tests.integration.test_emqx_hooks import app_with_hooks
from tests.support.servers import serve

CREDS = "/iot/api/v1/devices/credentials"


@pytest.fixture
def http(settings: Settings) -> Iterator[httpx.Client]:
    with serve(app_with_hooks(settings)) as url, httpx.Client(base_url=url, timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {login(client)}"
        yield client


def create(http: httpx.Client, sn: str) -> dict[str, object]:
    data: dict[str, object] = ok(http.post(CREDS, json={"sn": sn}))
    return data


def test_the_secret_is_shown_once_and_stored_only_hashed(http: httpx.Client, redis_db: redis.Redis,
                                                         settings: Settings) -> None:
    data = create(http, "GW1001")
    secret = data["secret"]
    assert isinstance(secret, str) and len(secret) >= 43
    assert set(data) == {"sn", "secret", "createTime"} and data["sn"] == "GW1001"
    stored = redis_db.hgetall(Keys.of(settings).credential("GW1001"))
    assert stored["hash"].startswith("$argon2id$")
    for key in redis_db.scan_iter():
        dump = redis_db.dump(key) or b""
        assert secret.encode() not in dump, f"the secret is readable in {key}"
    listed = http.get(CREDS).json()["data"]
    assert "secret" not in str(listed)


def test_a_second_credential_for_the_same_device_is_a_conflict(http: httpx.Client) -> None:
    first = create(http, "GW1002")
    assert_err(http.post(CREDS, json={"sn": "GW1002"}), 409, "conflict")
    assert http.get(CREDS, params={"sn": "GW1002"}).json()["data"]["list"] == [
        {"sn": "GW1002", "createTime": first["createTime"]}]


@pytest.mark.parametrize("body", [{}, {"sn": ""}, {"sn": "a/b"}, {"sn": "dma+"}, {"sn": "x" * 65},
                                  {"sn": "GW1", "secret": "mine"}, {"sn": 5}])
def test_bad_bodies_are_400(http: httpx.Client, body: dict[str, object]) -> None:
    assert_err(http.post(CREDS, json=body), 400, "invalid_params")


def test_lists_page_newest_first_without_secrets(http: httpx.Client, redis_db: redis.Redis,
                                                  settings: Settings) -> None:
    keys = Keys.of(settings)
    for n, sn in enumerate(("GW2001", "GW2002", "GW2003")):
        redis_db.hset(keys.credential(sn), mapping={"hash": "$argon2id$fake", "created": 1000 + n})
        redis_db.zadd(keys.credentials(), {sn: 1000 + n})
    first = http.get(CREDS, params={"page": 1, "limit": 2}).json()["data"]
    assert first == {"total": 3, "count": 2, "page": 1, "limit": 2,
                     "list": [{"sn": "GW2003", "createTime": 1002}, {"sn": "GW2002", "createTime": 1001}]}
    second = http.get(CREDS, params={"page": 2, "limit": 2}).json()["data"]
    assert (second["count"], second["list"]) == (1, [{"sn": "GW2001", "createTime": 1000}])
    assert http.get(CREDS, params={"sn": "NOPE"}).json()["data"]["total"] == 0
    assert_err(http.get(CREDS, params={"limit": 0}), 400, "invalid_params")


def test_revoke(http: httpx.Client, redis_db: redis.Redis, settings: Settings) -> None:
    create(http, "GW3001")
    assert http.delete(CREDS, params={"sn": "GW3001"}).json()["data"] == {"rows": 1}
    assert http.delete(CREDS, params={"sn": "GW3001"}).json()["data"] == {"rows": 0}
    assert redis_db.exists(Keys.of(settings).credential("GW3001")) == 0
    assert http.get(CREDS).json()["data"]["total"] == 0
    assert_err(http.delete(CREDS), 400, "invalid_params")


def test_only_admins_write(http: httpx.Client, settings: Settings) -> None:
    add_user(settings, "viewer1", "viewer", "viewer-pass-1")
    token = login(http, "viewer1", "viewer-pass-1")
    viewer = {"Authorization": f"Bearer {token}"}
    assert http.get(CREDS, headers=viewer).status_code == 200
    assert_err(http.post(CREDS, json={"sn": "GW4001"}, headers=viewer), 403, "forbidden")
    assert_err(http.delete(CREDS, params={"sn": "GW4001"}, headers=viewer), 403, "forbidden")
    assert_err(http.get(CREDS, headers={"Authorization": ""}), 401, "unauthorized")
