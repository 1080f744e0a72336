"""Every outcome of the foundation has its envelope: status code, `code` and shape (issue: foundation, item 4)."""

from __future__ import annotations

import httpx
import pytest

from adapter.app import create_app
from adapter.settings import Settings
from tests.conftest import CLUSTER, CLUSTER_PORTS
from tests.support.servers import serve, serve_api


def assert_err(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"status", "code", "msg"}
    assert body["status"] == "err"
    assert body["code"] == code
    assert isinstance(body["msg"], str) and body["msg"]
    assert "Traceback" not in body["msg"]
    return body


def test_success_envelope(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "data": {"alive": True}}


def test_unknown_path_is_404_not_found(admin: httpx.Client) -> None:
    assert_err(admin.get("/iot/api/v1/no/such/thing"), 404, "not_found")
    assert_err(admin.get("/elsewhere"), 404, "not_found")


@pytest.mark.parametrize("path", ["/iot/api/v1/auth/me/", "/iot/api/v1/remotectl/commands/", "/healthz/",
                                  "/emqx/events/"])
def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_host_header(client: httpx.Client, path: str) -> None:
    """Starlette redirected to the other spelling at the host the request's Host header named (an open redirect
    behind a proxy that passes Host on)."""
    r = client.get(path, headers={"Host": "evil.example"})
    assert_err(r, 404, "not_found")
    assert "location" not in r.headers
    assert client.get("/console", headers={"Host": "evil.example"}).headers["location"] == "/console/"


def test_wrong_method_is_405(admin: httpx.Client) -> None:
    r = admin.delete("/iot/api/v1/auth/login")
    assert_err(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]


def test_malformed_json_is_400(client: httpx.Client) -> None:
    body = assert_err(client.post("/iot/api/v1/auth/login", content=b'{"user": "admin",'), 400, "invalid_params")
    assert "JSON" in body["msg"]


@pytest.mark.parametrize(("payload", "field"), [
    ({"user": 5, "password": "x"}, "user"),
    ({"user": "admin"}, "password"),
    ({"user": "admin", "password": ["x"]}, "password"),
    ([], "body"),
])
def test_wrong_types_name_the_field(client: httpx.Client, payload: object, field: str) -> None:
    body = assert_err(client.post("/iot/api/v1/auth/login", json=payload), 400, "invalid_params")
    assert body["msg"].startswith(f"{field}:"), body["msg"]


def test_a_400_names_the_field_and_does_not_print_the_value_back(client: httpx.Client) -> None:
    secret = "hunter2-" * 200
    body = assert_err(client.post("/iot/api/v1/auth/login", json={"user": "admin", "password": secret}), 400,
                      "invalid_params")
    assert body["msg"] == "password: must be at most 1024 characters"
    body = assert_err(client.post("/iot/api/v1/auth/login", json={"user": "u" * 65, "password": "x"}), 400,
                      "invalid_params")
    assert body["msg"] == "user: must be at most 64 characters"


def test_body_over_limit_is_413(settings: Settings) -> None:
    small = settings.with_overrides(max_body_bytes=1000)
    with serve_api(small) as url, httpx.Client(base_url=url) as c:
        body = {"user": "admin", "password": "x" * 1000}
        assert_err(c.post("/iot/api/v1/auth/login", json=body), 413, "too_large")

        def chunks():  # no content-length: the limit holds on the streamed body too
            for _ in range(20):
                yield b"x" * 100

        assert_err(c.post("/iot/api/v1/auth/login", content=chunks()), 413, "too_large")
        # under the limit it is parsed as usual
        assert c.post("/iot/api/v1/auth/login", json={"user": "admin", "password": "admin-secret-1"}).status_code == 200


def test_unexpected_exception_outside_handlers_is_500(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A route that is not an Endpoint (or middleware) failing still answers the envelope."""
    from starlette.routing import Route

    async def boom(request: object) -> None:
        raise RuntimeError("secret internal detail")

    app = create_app(settings)
    app.router.routes.append(Route("/boom", boom))
    with serve(app) as url, httpx.Client(base_url=url) as c:
        r = c.get("/boom")
    body = assert_err(r, 500, "internal")
    assert "secret" not in r.text
    assert body["msg"] == "internal error"
    assert any(rec.exc_info and "secret internal detail" in str(rec.exc_info[1]) for rec in caplog.records)


def test_handler_bug_inside_endpoint_wrapper_is_500(settings: Settings, caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from adapter.auth.users import Sessions

    async def broken(self, token):  # a bug deep in the domain layer
        raise KeyError("secret-key-name")

    monkeypatch.setattr(Sessions, "resolve", broken)
    with serve_api(settings) as url, httpx.Client(base_url=url) as c:
        r = c.get("/iot/api/v1/auth/me", headers={"Authorization": "Bearer " + "a" * 64})
    assert_err(r, 500, "internal")
    assert "secret-key-name" not in r.text
    logged = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert logged and logged[0].exc_info is not None


def test_readyz_answers_503_when_redis_is_gone(settings: Settings) -> None:
    gone = settings.with_overrides(redis_url="redis://127.0.0.1:1/0")
    with serve_api(gone) as url, httpx.Client(base_url=url) as c:
        assert_err(c.get("/readyz"), 503, "unavailable")
        assert c.get("/healthz").status_code == 200
        # a request that needs Redis answers 503 with the envelope, not 500
        assert_err(c.post("/iot/api/v1/auth/login", json={"user": "a", "password": "b"}), 503, "unavailable")


def test_readyz_ok(client: httpx.Client) -> None:
    assert client.get("/readyz").json() == {"status": "ok", "data": {"redis": "ok", "nodes": len(CLUSTER_PORTS)
                                                                                  if CLUSTER else 1}}


def test_shutdown_closes_the_rq_connection(settings: Settings) -> None:
    from adapter.store.connections import rq_connection

    app = create_app(settings)
    with serve(app):
        conn = rq_connection(app.state.services)
        assert conn.ping()
        opened = list(conn.connection_pool._available_connections)  # type: ignore[attr-defined]
        assert opened and all(c._sock is not None for c in opened)
    assert "rq" not in app.state.services.extras
    assert all(c._sock is None for c in opened)
