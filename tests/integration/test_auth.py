"""Login, tokens, roles and the login rate limit against the real Redis (issue: foundation, item 5)."""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from adapter.app import create_app, endpoints
from adapter.auth import users as auth_mod
from adapter.auth.users import UserStore, digest
from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from tests.conftest import ADMIN_PASSWORD, login
from tests.integration.test_api_envelope import assert_err
from tests.support.servers import serve, serve_api, wait_for

LOGIN = "/iot/api/v1/auth/login"
# the API's own description is public too: Swagger UI, code generators and schemathesis read it without a login
UNAUTHENTICATED = {("POST", LOGIN), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/iot/api/v1/openapi.json"),
                   ("GET", "/iot/api/v1/docs")}


def add_user(settings: Settings, name: str, role: str, password: str) -> None:
    """For sync tests and the sync module fixture of tests/support/targets_api.py: its own event loop (an
    `async def` test awaits `UserStore(...).add` with the `aredis` fixture)."""
    async def run() -> None:

        client = async_redis(settings)
        try:
            await UserStore(client, Keys.of(settings)).add(name, role, password)
        finally:
            await client.aclose()

    asyncio.run(run())


def test_login_answers_the_seed_shape(client: httpx.Client) -> None:
    r = client.post(LOGIN, json={"user": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["data"]) == {"user", "token"}
    assert body["data"]["user"] == {"user": "admin", "roles": ["admin"], "privileges": ["admin", "view"]}
    assert re.fullmatch(r"[0-9a-f]{64}", body["data"]["token"])


def test_token_is_kept_hashed_with_the_ttl(client: httpx.Client, redis_db: redis.Redis, settings: Settings) -> None:
    token = login(client)
    key = Keys.of(settings).token(digest(token))
    assert redis_db.hgetall(key) == {"user": "admin", "role": "admin"}
    assert 0 < redis_db.ttl(key) <= settings.token_ttl
    assert not any(token in k for k in redis_db.keys("*"))


def test_wrong_user_and_wrong_password_get_the_same_answer(client: httpx.Client) -> None:
    a = client.post(LOGIN, json={"user": "admin", "password": "wrong-password"})
    b = client.post(LOGIN, json={"user": "nobody", "password": ADMIN_PASSWORD})
    assert_err(a, 401, "unauthorized")
    assert_err(b, 401, "unauthorized")
    assert a.json() == b.json()


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer " + "0" * 64, "Basic YWRtaW46eA==", "Bearer short"])
def test_every_v1_endpoint_but_login_needs_a_valid_token(client: httpx.Client, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    checked = 0
    for ep in endpoints():
        if (ep.method, ep.path) in UNAUTHENTICATED or not ep.path.startswith("/iot/api/v1/"):
            continue
        path = ep.path.replace("{", "").replace("}", "")
        r = client.request(ep.method, path, headers=headers, json={})
        assert_err(r, 401, "unauthorized")
        checked += 1
    assert checked >= 3


def test_me_and_logout(client: httpx.Client) -> None:
    token = login(client)
    auth = {"Authorization": f"Bearer {token}"}
    me = client.get("/iot/api/v1/auth/me", headers=auth)
    assert me.json()["data"]["user"]["user"] == "admin"
    assert client.post("/iot/api/v1/auth/logout", headers=auth).status_code == 200
    assert_err(client.get("/iot/api/v1/auth/me", headers=auth), 401, "unauthorized")


def test_changing_endpoints_are_admin_only(client: httpx.Client, settings: Settings) -> None:
    """Every v1 endpoint that changes anything is declared admin, and a viewer gets 403 on each."""
    session_only = {LOGIN, "/iot/api/v1/auth/logout"}
    reads_by_post = {"/iot/api/v1/monitor/devices/select"}  # a selector's dry run: its body is a query
    changing = [ep for ep in endpoints() if ep.method != "GET" and ep.path.startswith("/iot/api/v1/")
                and ep.path not in session_only | reads_by_post]
    for ep in changing:
        assert ep.access == "admin", f"{ep.method} {ep.path} changes state but is open to viewers"
    add_user(settings, "vera", "viewer", "viewer-secret")
    token = login(client, "vera", "viewer-secret")
    me = client.get("/iot/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()["data"]["user"]
    assert me == {"user": "vera", "roles": ["viewer"], "privileges": ["view"]}
    for ep in changing:
        path = ep.path.replace("{", "").replace("}", "")
        r = client.request(ep.method, path, headers={"Authorization": f"Bearer {token}"}, json={})
        assert_err(r, 403, "forbidden")


def test_viewer_is_forbidden_on_an_admin_endpoint(settings: Settings) -> None:
    """The access check itself, on an admin endpoint added for the test."""
    from adapter.http.endpoint import Endpoint

    async def change(call: object) -> dict:
        return {"changed": True}

    app = create_app(settings)
    app.router.routes.append(Endpoint("POST", "/iot/api/v1/test/change", change, "test", access="admin").route())
    with serve(app) as url, httpx.Client(base_url=url) as c:
        add_user(settings, "vic", "viewer", "viewer-secret")
        viewer = {"Authorization": f"Bearer {login(c, 'vic', 'viewer-secret')}"}
        admin = {"Authorization": f"Bearer {login(c)}"}
        assert_err(c.post("/iot/api/v1/test/change", headers=viewer), 403, "forbidden")
        assert c.post("/iot/api/v1/test/change", headers=admin).json() == {"status": "ok", "data": {"changed": True}}


def test_failed_logins_are_rate_limited_per_user_at_an_address(client: httpx.Client, settings: Settings) -> None:
    for _ in range(settings.login_max_failures):
        assert_err(client.post(LOGIN, json={"user": "admin", "password": "bad-password"}), 401, "unauthorized")
    r = client.post(LOGIN, json={"user": "admin", "password": ADMIN_PASSWORD})
    assert_err(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) > 0
    # another user from the same address is not locked out by admin's failures
    add_user(settings, "other", "viewer", "other-secret")
    assert client.post(LOGIN, json={"user": "other", "password": "other-secret"}).status_code == 200


def test_failed_logins_are_rate_limited_per_address(settings: Settings) -> None:
    strict = settings.with_overrides(login_max_failures_per_ip=3, login_max_failures=100)
    with serve_api(strict) as url, httpx.Client(base_url=url) as c:
        for i in range(3):
            assert_err(c.post(LOGIN, json={"user": f"guess{i}", "password": "x"}), 401, "unauthorized")
        assert_err(c.post(LOGIN, json={"user": "admin", "password": ADMIN_PASSWORD}), 429, "rate_limited")


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the password checks logins make."""
    calls: list[str] = []
    real = auth_mod.verify_secret

    async def counting(stored: str, password: str) -> bool:
        calls.append(password)
        return await real(stored, password)

    monkeypatch.setattr(auth_mod, "verify_secret", counting)
    return calls


def from_address(url: str, address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z is this machine's loopback)."""
    return httpx.Client(base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address=address))


def test_concurrent_wrong_passwords_are_checked_at_most_the_limit(settings: Settings,
                                                                   verifications: list[str]) -> None:
    """Each attempt is counted before its password is checked, so a burst cannot race past the limit."""
    limit, attempts = 3, 20
    strict = settings.with_overrides(login_max_failures=limit, login_verify_queue=attempts)
    with serve_api(strict) as url, httpx.Client(base_url=url, timeout=30) as c, \
            ThreadPoolExecutor(attempts) as pool:
        codes = list(pool.map(lambda n: c.post(LOGIN, json={"user": "admin", "password": f"bad-{n}"})
                              .status_code, range(attempts)))
    assert set(codes) <= {401, 429}
    assert codes.count(401) <= limit, f"{codes.count(401)} wrong passwords checked for a limit of {limit}"
    assert len(verifications) <= limit
    assert codes.count(429) >= attempts - limit


def test_a_stranger_cannot_lock_admin_out_from_another_address(settings: Settings) -> None:
    with serve_api(settings) as url, from_address(url, "127.0.0.2") as stranger, \
            from_address(url, "127.0.0.1") as operator:
        for _ in range(settings.login_max_failures):
            assert_err(stranger.post(LOGIN, json={"user": "admin", "password": "guess"}), 401, "unauthorized")
        assert_err(stranger.post(LOGIN, json={"user": "admin", "password": ADMIN_PASSWORD}), 429, "rate_limited")
        login(operator)


def test_each_lock_of_a_user_at_an_address_lasts_twice_the_last(settings: Settings,
                                                                 redis_db: redis.Redis) -> None:
    backoff = settings.with_overrides(login_max_failures=2, login_lock_first=60, login_lock_longest=150)
    pair = Keys.of(settings).login_failures_pair("admin", "127.0.0.1")
    waits = []
    with serve_api(backoff) as url, httpx.Client(base_url=url, timeout=10) as c:
        for _ in range(4):
            for _ in range(2):
                assert_err(c.post(LOGIN, json={"user": "admin", "password": "guess"}), 401, "unauthorized")
            r = c.post(LOGIN, json={"user": "admin", "password": ADMIN_PASSWORD})
            assert_err(r, 429, "rate_limited")
            waits.append(int(r.headers["retry-after"]))
            assert redis_db.pttl(pair) > 0
            assert redis_db.hset(pair, "u", 0) == 0  # what the lock's time passing does
        login(c)
    assert waits == [60, 120, 150, 150]
    assert redis_db.exists(pair) == 0, "a success forgets the user's failures at this address"


def test_login_checks_at_most_the_bound_at_once_and_answers_503_past_its_queue(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    running = peak = 0

    async def held(stored: str, password: str) -> bool:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        while not gate.is_set():
            await asyncio.sleep(0.005)
        running -= 1
        return False

    monkeypatch.setattr(auth_mod, "verify_secret", held)
    bounded = settings.with_overrides(login_verify_concurrency=2, login_verify_queue=1)
    with serve_api(bounded) as url, httpx.Client(base_url=url, timeout=30) as c, \
            ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(c.post, LOGIN, json={"user": f"user{n}", "password": "guess"}) for n in range(6)]
        try:
            wait_for(lambda: sum(f.done() for f in futures) == 3, what="the 3 past the bound to be refused")
            assert peak == 2
        finally:
            gate.set()
        codes = sorted(f.result().status_code for f in futures)
    assert codes == [401, 401, 401, 503, 503, 503]
    assert peak == 2
    refused = [f.result() for f in futures if f.result().status_code == 503]
    assert_err(refused[0], 503, "unavailable")
    assert refused[0].headers["retry-after"] == "1"


async def test_password_change_and_delete_end_logins(client: httpx.Client, settings: Settings,
                                                     aredis: redis.asyncio.Redis) -> None:
    users = UserStore(aredis, Keys.of(settings))
    await users.add("carol", "admin", "carol-secret")
    token = login(client, "carol", "carol-secret")
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/iot/api/v1/auth/me", headers=auth).status_code == 200

    await users.set_password("carol", "carol-secret-2")
    assert_err(client.get("/iot/api/v1/auth/me", headers=auth), 401, "unauthorized")
    assert_err(client.post(LOGIN, json={"user": "carol", "password": "carol-secret"}), 401, "unauthorized")
    login(client, "carol", "carol-secret-2")


def test_first_admin_comes_from_the_configured_password(redis_db: redis.Redis, settings: Settings) -> None:
    keys = Keys.of(settings)
    assert redis_db.smembers(keys.users()) == set()
    with serve_api(settings):
        pass
    assert redis_db.smembers(keys.users()) == {"admin"}
    stored = redis_db.hget(keys.user("admin"), "hash")
    assert stored is not None and stored.startswith("$argon2id$")
    # a second start with another password does not overwrite an existing user outside dev
    with serve_api(settings.with_overrides(admin_password="another-one")) as url, \
            httpx.Client(base_url=url) as c:
        login(c)
