"""`POST /emqx/authn` and `/emqx/authz` through the real app and the real Redis: EMQX's answer shape, the
shared secret, devices by credential, the verified-secret cache, configured clients, and what happens when
Redis does not answer (authn "ignore", authz unaffected)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette

from adapter.api import credentials as credentials_api
from adapter.api import emqx_hooks
from adapter.app import create_app
from adapter.broker import credentials as credentials_mod
from adapter.broker import emqx_auth
from adapter.broker.credentials import CredentialStore, VerifyLimiter, cache_digest
from adapter.settings import Settings
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from tests.conftest import INGEST_TOKEN, login
from tests.support.servers import free_port, serve

CREDS = "/iot/api/v1/devices/credentials"
EMQX = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def app_with_hooks(settings: Settings) -> Starlette:
    app = create_app(settings)
    app.router.routes[0:0] = [ep.route() for ep in (*emqx_hooks.ENDPOINTS, *credentials_api.ENDPOINTS)]
    return app


@dataclass
class Live:
    http: httpx.Client
    app: Starlette
    keys: Keys

    def authn(self, clientid: str, password: str, username: str | None = None, peerhost: str = "10.0.0.9",
              **headers: str) -> httpx.Response:
        body = {"clientid": clientid, "username": clientid if username is None else username,
                "password": password, "peerhost": peerhost}
        return self.http.post("/emqx/authn", json=body, headers=headers or EMQX)

    def authz(self, clientid: str, topic: str, action: str, username: str | None = None) -> httpx.Response:
        body = {"clientid": clientid, "username": clientid if username is None else username, "topic": topic,
                "action": action}
        return self.http.post("/emqx/authz", json=body, headers=EMQX)

    def provision(self, sn: str) -> str:
        token = login(self.http)
        r = self.http.post(CREDS, json={"sn": sn}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["secret"])

    def configure(self, clients: list[dict[str, Any]]) -> None:
        self.app.state.services.extras[emqx_hooks.EXTRA] = emqx_hooks.HookState(
            emqx_auth.parse_clients(json.dumps(clients)))


@contextmanager
def running(settings: Settings) -> Iterator[Live]:
    app = app_with_hooks(settings)
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Live(http, app, Keys.of(settings))


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with running(settings) as one:
        yield one


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the argon2id checks the credential store makes."""
    calls: list[str] = []
    real: Callable[[str, str], Any] = credentials_mod.verify_secret

    async def counting(stored: str, password: str) -> bool:
        calls.append(password)
        return bool(await real(stored, password))

    monkeypatch.setattr(credentials_mod, "verify_secret", counting)
    return calls


def result(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


def test_a_device_with_its_secret_is_allowed_and_only_with_it(live: Live) -> None:
    secret = live.provision("GW0001")
    assert result(live.authn("GW0001", secret)) == {"result": "allow", "is_superuser": False}
    assert result(live.authn("GW0001", secret, username="")) == {"result": "allow", "is_superuser": False}
    assert result(live.authn("GW0001", secret + "x")) == {"result": "deny"}
    assert result(live.authn("GW0001", "")) == {"result": "deny"}


@pytest.mark.parametrize(("clientid", "username"), [("NOPE01", "NOPE01"), ("GW0001", "someone-else"),
                                                    ("a+b", "a+b"), ("a/b", "")])
def test_what_is_not_a_device_of_ours_is_ignored(live: Live, clientid: str, username: str) -> None:
    assert result(live.authn(clientid, "whatever-secret", username=username)) == {"result": "ignore"}


def test_the_shared_secret_is_required(live: Live) -> None:
    assert live.authn("GW0001", "x", Authorization="Bearer wrong").status_code == 401
    body = {"clientid": "c", "topic": "t", "action": "publish"}
    assert live.http.post("/emqx/authz", json=body).status_code == 401


def test_a_malformed_body_is_400(live: Live) -> None:
    r = live.http.post("/emqx/authn", content=b"{not json", headers=EMQX)
    assert r.status_code == 400
    r = live.http.post("/emqx/authz", json={"clientid": "c", "action": "publish"}, headers=EMQX)
    assert (r.status_code, r.json()["msg"]) == (400, "topic: is required")


def test_a_verified_secret_is_remembered_while_the_device_keeps_connecting(live: Live, redis_db: redis.Redis,
                                                     verifications: list[str]) -> None:
    secret = live.provision("GW0002")
    for _ in range(3):
        assert result(live.authn("GW0002", secret))["result"] == "allow"
    assert verifications == [secret], "one argon2id check, then the cache"
    key = live.keys.authn_cache("GW0002")
    assert redis_db.get(key) == cache_digest("GW0002", secret)
    assert 0 < redis_db.ttl(key) <= emqx_hooks.DEFAULT_CACHE_TTL
    redis_db.expire(key, 50)
    assert result(live.authn("GW0002", secret))["result"] == "allow"
    assert redis_db.ttl(key) > 50, "each connect renews the mark"
    assert result(live.authn("GW0002", "wrong-secret"))["result"] == "deny"
    assert len(verifications) == 2, "a wrong secret is always checked"


def test_too_many_checks_at_once_is_a_quick_ignore(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = live.provision("GW0009")

    async def full(stored: str, password: str) -> bool:
        raise credentials_mod.Busy

    monkeypatch.setattr(credentials_mod, "verify_secret", full)
    assert result(live.authn("GW0009", secret)) == {"result": "ignore"}


# failed checks are throttled per sn and per peerhost, counted before the argon2id check

def unlock(redis_db: redis.Redis, key: str) -> None:
    """What the passing of a lock's time does (throttle.lua keeps the lock end in field `u`)."""
    assert redis_db.hset(key, "u", 0) == 0, "the bucket was locked"


def test_failed_checks_of_one_sn_lock_it_without_more_argon2(settings: Settings, redis_db: redis.Redis,
                                                              verifications: list[str]) -> None:
    with running(settings.with_overrides(authn_max_failures=3, authn_max_failures_per_host=100)) as live:
        secret, other = live.provision("GW0010"), live.provision("GW0011")
        assert result(live.authn("GW0010", secret))["result"] == "allow"  # remembered from now on
        for n in range(3):
            assert result(live.authn("GW0010", f"guess-{n}")) == {"result": "deny"}
        assert len(verifications) == 4
        for peerhost in ("10.0.0.9", "10.9.9.9"):
            assert result(live.authn("GW0010", "guess-x", peerhost=peerhost)) == {"result": "deny"}
        assert len(verifications) == 4, "a locked sn is denied without a check"
        assert result(live.authn("GW0010", secret))["result"] == "allow", "its remembered secret still works"
        assert result(live.authn("GW0011", other))["result"] == "allow", "another sn is not locked"
        redis_db.delete(live.keys.authn_cache("GW0010"))
        assert result(live.authn("GW0010", secret)) == {"result": "deny"}
        assert len(verifications) == 5
        unlock(redis_db, live.keys.authn_failures_sn("GW0010"))
        assert result(live.authn("GW0010", secret))["result"] == "allow"
        assert redis_db.exists(live.keys.authn_failures_sn("GW0010")) == 0, "a success clears the sn's count"


def test_failed_checks_from_one_peerhost_lock_it_for_every_sn(settings: Settings, redis_db: redis.Redis,
                                                               verifications: list[str]) -> None:
    with running(settings.with_overrides(authn_max_failures=100, authn_max_failures_per_host=3)) as live:
        secrets = {sn: live.provision(sn) for sn in ("GW0020", "GW0021", "GW0022", "GW0023")}
        for sn in ("GW0020", "GW0021", "GW0022"):
            assert result(live.authn(sn, "guess", peerhost="192.0.2.7")) == {"result": "deny"}
        assert len(verifications) == 3
        assert result(live.authn("GW0023", secrets["GW0023"], peerhost="192.0.2.7")) == {"result": "deny"}
        assert len(verifications) == 3, "a locked peerhost is denied without a check"
        assert result(live.authn("GW0023", secrets["GW0023"], peerhost="192.0.2.8"))["result"] == "allow"


def test_concurrent_wrong_secrets_check_at_most_the_limit(settings: Settings,
                                                           verifications: list[str]) -> None:
    limit, attempts = 3, 16
    strict = settings.with_overrides(authn_max_failures=limit, authn_verify_concurrency=2,
                                     authn_verify_queue=attempts)
    with running(strict) as live:
        live.provision("GW0030")
        with ThreadPoolExecutor(attempts) as pool:
            answers = list(pool.map(lambda n: result(live.authn("GW0030", f"guess-{n}"))["result"],
                                    range(attempts)))
        assert answers == ["deny"] * attempts
        assert len(verifications) <= limit, f"{len(verifications)} checks ran for a limit of {limit}"


def test_device_checks_have_their_own_bound_sized_by_the_settings(settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    entered = threading.Event()

    async def held(stored: str, password: str) -> bool:
        entered.set()
        while not gate.is_set():
            await asyncio.sleep(0.005)
        return False

    monkeypatch.setattr(credentials_mod, "verify_secret", held)
    bounded = settings.with_overrides(authn_verify_concurrency=1, authn_verify_queue=0,
                                      login_verify_concurrency=1, login_verify_queue=0)
    with running(bounded) as live, ThreadPoolExecutor(1) as pool:
        live.provision("GW0040")
        live.provision("GW0041")
        first = pool.submit(live.authn, "GW0040", "guess")
        try:
            assert entered.wait(10), "the first check started"
            assert result(live.authn("GW0041", "guess")) == {"result": "ignore"}, "the one slot is taken"
            r = live.http.post("/iot/api/v1/auth/login", json={"user": "admin", "password": "guess"})
            assert r.status_code == 401, "a login is checked meanwhile: it has a bound of its own"
        finally:
            gate.set()
        assert result(first.result()) == {"result": "deny"}


def test_revoking_takes_effect_at_once(live: Live, redis_db: redis.Redis) -> None:
    secret = live.provision("GW0003")
    assert result(live.authn("GW0003", secret))["result"] == "allow"
    token = login(live.http)
    r = live.http.delete(CREDS, params={"sn": "GW0003"}, headers={"Authorization": f"Bearer {token}"})
    assert r.json()["data"] == {"rows": 1}
    assert redis_db.exists(live.keys.authn_cache("GW0003")) == 0
    assert result(live.authn("GW0003", secret)) == {"result": "ignore"}


async def test_a_verification_racing_a_revocation_leaves_no_cache(settings: Settings,
                                                                  redis_db: redis.Redis) -> None:
    keys = Keys.of(settings)
    one = VerifyLimiter(1, 1)

    client = async_redis(settings)
    store = CredentialStore(client, keys)
    try:
        _, secret = await store.create("GW0004")
        real = credentials_mod.verify_secret

        async def revoked_meanwhile(stored: str, password: str) -> bool:
            good = bool(await real(stored, password))
            await store.revoke("GW0004")
            await store.create("GW0004")
            return good

        credentials_mod.verify_secret = revoked_meanwhile  # type: ignore[assignment]
        try:
            assert await store.verify("GW0004", secret, cache_ttl=60, limiter=one) is True
        finally:
            credentials_mod.verify_secret = real  # type: ignore[assignment]
        assert await client.exists(keys.authn_cache("GW0004")) == 0
        assert await store.verify("GW0004", secret, cache_ttl=60, limiter=one) is False
    finally:
        await client.aclose()


@pytest.mark.parametrize(("topic", "action", "expected"), [
    ("dma/report/GW0005/heartbeat", "publish", "allow"), ("dma/resp/cmd", "publish", "allow"),
    ("dma/report/GW0006/heartbeat", "publish", "deny"), ("dma/cmd/GW0005", "subscribe", "allow"),
    ("dma/cmd/#", "subscribe", "deny"),
])
def test_a_device_is_authorized_on_its_own_topics(live: Live, topic: str, action: str, expected: str) -> None:
    assert result(live.authz("GW0005", topic, action)) == {"result": expected}


def test_configured_clients(live: Live) -> None:
    live.configure([{"username": "simulator", "password": "sim-password-1",
                     "publish": ["dma/report/{clientid}/#", "dma/resp/cmd"],
                     "subscribe": ["dma/cmd/{clientid}"]},
                    {"username": "console", "subscribe": ["dma/report/#"]}])
    assert result(live.authn("SIM0001", "sim-password-1", username="simulator"))["result"] == "allow"
    assert result(live.authn("SIM0001", "nope", username="simulator")) == {"result": "deny"}
    assert result(live.authn("c-1", "anything", username="console")) == {"result": "ignore"}
    assert result(live.authz("SIM0001", "dma/report/SIM0001/sys", "publish", username="simulator")) \
        == {"result": "allow"}
    assert result(live.authz("SIM0001", "dma/cmd/SIM0002", "subscribe", username="simulator")) \
        == {"result": "deny"}
    assert result(live.authz("c-1", "dma/report/+/sys", "subscribe", username="console")) \
        == {"result": "allow"}
    assert result(live.authz("c-1", "dma/cmd/X", "publish", username="console")) == {"result": "deny"}


def test_without_redis_authn_says_ignore_and_authz_still_decides(settings: Settings) -> None:
    down = settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with serve(app_with_hooks(down)) as url, httpx.Client(base_url=url, timeout=10) as http:
        live = Live(http, Starlette(), Keys.of(settings))
        assert result(live.authn("GW0007", "some-secret")) == {"result": "ignore"}
        assert result(live.authz("GW0007", "dma/cmd/GW0007", "subscribe")) == {"result": "allow"}
        assert result(live.authz("GW0007", "dma/cmd/GW0008", "subscribe")) == {"result": "deny"}
