"""Broker monitoring through the real app, against a fake EMQX on loopback, and the publish classification.

The fake answers the documented EMQX 5 shapes (emqx/rest-api.md) and refuses requests without the API key.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from adapter.app import create_app
from adapter.broker.client import (
    EmqxClient,
    Message,
    PublishOutcome,
    PublishResult,
    aggregate,
    classify_bulk,
    classify_publish,
)
from adapter.errors import AppError
from adapter.settings import Settings
from tests.conftest import login, ok
from tests.integration.test_api_envelope import assert_err
from tests.support.fake_emqx import BASIC, KEY, SECRET, FakeEmqx
from tests.support.servers import free_port, serve

V1 = "/iot/api/v1/monitor/brokers"
PATHS = [f"{V1}/stats", V1, f"{V1}/connections", f"{V1}/sessions"]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[FakeEmqx, str]]:
    emqx = FakeEmqx()
    with serve(emqx.app()) as url:
        yield emqx, f"{url}/api/v5"


@pytest.fixture
def fake(fake_server: tuple[FakeEmqx, str]) -> tuple[FakeEmqx, str]:
    """The fake EMQX (one server for the module), its state fresh for each test."""
    fake_server[0].reset()
    return fake_server


@dataclass
class Api:
    http: httpx.Client
    app: Starlette


@contextmanager
def running(settings: Settings, emqx_url: str, **overrides: Any) -> Iterator[Api]:
    """The real app with the broker routes, EMQX at `emqx_url`, logged in as admin."""
    emqx = {"emqx_api_url": emqx_url, "emqx_api_key": KEY, "emqx_api_secret": SECRET, **overrides}
    app = create_app(settings.with_overrides(**emqx))
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        http.headers["Authorization"] = f"Bearer {login(http)}"
        yield Api(http, app)


@pytest.fixture
def api(settings: Settings, fake: tuple[FakeEmqx, str]) -> Iterator[Api]:
    with running(settings, fake[1]) as a:
        yield a


@contextmanager
def hanging() -> Iterator[str]:
    """A server that accepts connections (the kernel does, from the backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api/v5"


# The four endpoints


def test_stats(api: Api, fake: tuple[FakeEmqx, str]) -> None:
    assert ok(api.http.get(f"{V1}/stats")) == {
        "metrics": {"messageSentCount": 23247, "messageReceivedCount": 66452, "packetSentCount": 58174,
                    "packetReceivedCount": 101347, "byteSentCount": 3315420, "byteReceivedCount": 9280059},
        "stats": {"nodeCount": 1, "sessionCount": 7, "connectionCount": 5},
    }
    assert {r.url.path for r in fake[0].seen} == {"/api/v5/stats", "/api/v5/metrics", "/api/v5/nodes"}
    assert all(r.headers["authorization"] == BASIC for r in fake[0].seen)


def test_nodes(api: Api) -> None:
    before = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    data = ok(api.http.get(V1))
    after = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    assert data["count"] == 2
    running, stopped = data["list"]
    assert running["node"] == "emqx@10.0.0.1" and running["node_status"] == "Running"
    assert running["uptime"] == "1 days,18 hours, 45 minutes, 1 seconds"
    assert running["version"] == "5.8.9" and running["otp_release"] == "26.2.5-3/14.2.5"
    assert running["sysdescr"] == "EMQX Opensource"
    assert before <= running["datetime"] <= after
    assert stopped["node_status"] == "Stopped" and stopped["uptime"] == "undefined"


def test_connections_page_through_connected_clients_only(api: Api, fake: tuple[FakeEmqx, str]) -> None:
    first = ok(api.http.get(f"{V1}/connections", params={"page": 1, "limit": 2}))
    assert (first["total"], first["count"], first["page"], first["limit"]) == (5, 2, 1, 2)
    assert [c["client_id"] for c in first["list"]] == ["dev-1", "dev-2"]
    last = ok(api.http.get(f"{V1}/connections", params={"page": 3, "limit": 2}))
    assert (last["total"], last["count"], last["page"]) == (5, 1, 3)
    beyond = ok(api.http.get(f"{V1}/connections", params={"page": 4, "limit": 2}))
    assert (beyond["total"], beyond["count"], beyond["list"]) == (5, 0, [])
    conn = first["list"][0]
    assert conn == {
        "clean_start": True, "client_id": "dev-1", "connected_at": "2024-01-01 04:34:56",
        "ipaddress": "10.1.2.3", "is_bridge": False, "is_super": False, "keepalive": 60,
        "mountpoint": "undefined", "node": "emqx@10.0.0.1", "peercert": "nossl", "port": 50001,
        "proto_name": "MQTT", "proto_ver": 4, "username": "user-1", "will_topic": "undefined",
        "zone": "undefined", "listener": "tcp:default",
    }
    default = ok(api.http.get(f"{V1}/connections"))
    assert (default["total"], default["count"], default["page"], default["limit"]) == (5, 5, 1, 100)
    assert all(r.query_params["conn_state"] == "connected" for r in fake[0].seen)


def test_sessions_include_disconnected_ones(api: Api) -> None:
    data = ok(api.http.get(f"{V1}/sessions", params={"page": 2, "limit": 5}))
    assert (data["total"], data["count"], data["page"], data["limit"]) == (7, 2, 2, 5)
    assert [(s["client_id"], s["connected"]) for s in data["list"]] == [("dev-6", False), ("dev-7", False)]
    session = data["list"][0]
    assert session["created_at"] == "2024-01-01 04:34:50"
    assert session["expiry_interval"] == 7200 and session["mqueue_len"] == 2
    assert session["max_subscriptions"] == 0 and session["max_inflight"] == 32
    assert session["binding"] == "local" and session["enqueue_msg"] == 0


def test_filters_are_passed_to_emqx(api: Api, fake: tuple[FakeEmqx, str]) -> None:
    data = ok(api.http.get(f"{V1}/sessions", params={"client_id": "dev-7"}))
    assert [s["client_id"] for s in data["list"]] == ["dev-7"] and data["total"] == 1
    data = ok(api.http.get(f"{V1}/connections", params={"username": "user-2"}))
    assert [c["client_id"] for c in data["list"]] == ["dev-2"]
    assert ok(api.http.get(f"{V1}/connections", params={"client_id": "dev-7"}))["total"] == 0


def test_a_client_id_search_is_emqx_like_clientid(api: Api, fake: tuple[FakeEmqx, str]) -> None:
    """`like_client_id` is passed as EMQX's fuzzy `like_clientid`; EMQX then gives no count, so `total` is the least
    the page proves (one more while EMQX says there is a next page)."""
    data = ok(api.http.get(f"{V1}/sessions", params={"like_client_id": "dev-", "limit": 3}))
    assert [s["client_id"] for s in data["list"]] == ["dev-1", "dev-2", "dev-3"] and data["total"] == 4
    assert fake[0].seen[-1].query_params["like_clientid"] == "dev-"
    data = ok(api.http.get(f"{V1}/connections", params={"like_client_id": "v-2"}))
    assert [c["client_id"] for c in data["list"]] == ["dev-2"] and data["total"] == 1
    assert ok(api.http.get(f"{V1}/connections", params={"like_client_id": "nobody"}))["total"] == 0


def test_one_client_per_app(api: Api) -> None:
    ok(api.http.get(V1))
    services = api.app.state.services
    first = services.extras["broker"]
    ok(api.http.get(f"{V1}/stats"))
    assert services.extras["broker"] is first


def test_a_token_is_required_and_paging_is_checked(api: Api, fake: tuple[FakeEmqx, str]) -> None:
    for path in PATHS:
        assert_err(api.http.get(path, headers={"Authorization": ""}), 401, "unauthorized")
    for params in ({"page": 0}, {"limit": 1001}, {"limit": "x"}):
        assert_err(api.http.get(f"{V1}/connections", params=params), 400, "invalid_params")
    assert fake[0].seen == []


# EMQX failing


def assert_502_soon(http: httpx.Client, path: str) -> dict[str, Any]:
    started = time.monotonic()
    body = assert_err(http.get(path), 502, "broker_unavailable")
    assert time.monotonic() - started < 3
    return body


def test_emqx_down_is_502_at_once(settings: Settings) -> None:
    with running(settings, f"http://127.0.0.1:{free_port()}/api/v5") as a:
        for path in PATHS:
            assert assert_502_soon(a.http, path)["msg"] == "EMQX is not reachable"


def test_emqx_hanging_is_502_within_3_s(settings: Settings) -> None:
    assert settings.emqx_timeout < 3
    with hanging() as url, running(settings, url) as a:
        body = assert_502_soon(a.http, f"{V1}/stats")
    assert body["msg"] == f"EMQX did not answer within {settings.emqx_timeout:g} s"


def test_emqx_hanging_on_a_page(settings: Settings) -> None:
    with hanging() as url, running(settings, url, emqx_timeout=0.5) as a:
        started = time.monotonic()
        assert_err(a.http.get(f"{V1}/sessions"), 502, "broker_unavailable")
        assert time.monotonic() - started < 1.5


def test_emqx_error_status_is_502(api: Api, fake: tuple[FakeEmqx, str]) -> None:
    for status in (500, 404, 400):
        fake[0].status = status
        for path in PATHS:
            assert assert_502_soon(api.http, path)["msg"] == f"EMQX answered HTTP {status}"


def test_wrong_api_key_is_502(settings: Settings, fake: tuple[FakeEmqx, str]) -> None:
    with running(settings, fake[1], emqx_api_secret="wrong") as a:
        body = assert_err(a.http.get(V1), 502, "broker_unavailable")
    assert body["msg"] == "EMQX refused the API key (HTTP 401)"
    assert SECRET not in body["msg"]


def test_unreadable_answer_is_502(api: Api, fake: tuple[FakeEmqx, str]) -> None:
    fake[0].garbage = True
    for path in PATHS:
        assert assert_502_soon(api.http, path)["msg"] == "EMQX sent an unreadable answer"


# Publishing (used by the command engine)


async def publish(url: str, *args: Any, timeout: float = 2.5, **kwargs: Any) -> PublishResult:
    async with EmqxClient(url, KEY, SECRET, timeout) as client:
        return await client.publish(*args, **kwargs)


@pytest.mark.parametrize(("topic", "expected"), [
    ("t/sent", PublishResult(PublishOutcome.SENT, id="00061A4C2B1E5F3AF4420000030F0003")),
    ("t/none", PublishResult(PublishOutcome.NO_SUBSCRIBERS, None, 16, "no_matching_subscribers")),
    ("t/#", PublishResult(PublishOutcome.REJECTED, None, 144, "topic_name_invalid")),
    ("t/retry", PublishResult(PublishOutcome.RETRY, None, 131, "failed_to_dispatch")),
])
async def test_publish_result_by_status(fake: tuple[FakeEmqx, str], topic: str, expected: PublishResult) -> None:
    result = await publish(fake[1], topic, "hello", qos=1)
    assert result == expected
    assert result.published == (expected.outcome in (PublishOutcome.SENT, PublishOutcome.NO_SUBSCRIBERS))


async def test_publish_body(fake: tuple[FakeEmqx, str]) -> None:
    await publish(fake[1], "t/sent", b"\x00\xffbin", qos=2, retain=True, properties={"message_expiry_interval": 60})
    await publish(fake[1], "t/sent", '{"cmd":"reboot"}')
    binary, text = fake[0].published
    assert binary == {"topic": "t/sent", "qos": 2, "retain": True, "payload_encoding": "base64",
                      "payload": base64.b64encode(b"\x00\xffbin").decode(),
                      "properties": {"message_expiry_interval": 60}}
    assert text == {"topic": "t/sent", "qos": 0, "retain": False, "payload": '{"cmd":"reboot"}'}


@pytest.mark.parametrize(("status", "msg"), [(500, "EMQX answered HTTP 500"),
                                             (401, "EMQX refused the API key (HTTP 401)")])
async def test_publish_raises_on_unexpected_status(fake: tuple[FakeEmqx, str], status: int, msg: str) -> None:
    fake[0].status = status
    with pytest.raises(AppError) as caught:
        await publish(fake[1], "t/sent", "x")
    assert (caught.value.code, caught.value.status, caught.value.msg) == ("broker_unavailable", 502, msg)


async def test_publish_raises_when_emqx_is_down_or_hangs() -> None:
    with pytest.raises(AppError, match="EMQX is not reachable"):
        await publish(f"http://127.0.0.1:{free_port()}/api/v5", "t/sent", "x")
    with hanging() as url:
        started = time.monotonic()
        with pytest.raises(AppError, match=r"did not answer within 0\.3 s"):
            await publish(url, "t/sent", "x", timeout=0.3)
        assert time.monotonic() - started < 1.3


async def bulk(url: str, messages: list[Message]) -> Any:
    async with EmqxClient(url, KEY, SECRET, 2.5) as client:
        return await client.publish_bulk(messages)


async def test_publish_bulk(fake: tuple[FakeEmqx, str]) -> None:
    url = fake[1]
    sent = await bulk(url, [Message("t/sent", "a"), Message("t/sent", b"b")])
    assert sent.outcome is PublishOutcome.SENT
    assert [r.outcome for r in sent.items] == [PublishOutcome.SENT] * 2 and all(r.id for r in sent.items)

    mixed = await bulk(url, [Message("t/sent", "a"), Message("t/none", "b")])
    assert mixed.outcome is PublishOutcome.NO_SUBSCRIBERS
    assert [r.outcome for r in mixed.items] == [PublishOutcome.SENT, PublishOutcome.NO_SUBSCRIBERS]

    failed = await bulk(url, [Message("t/retry", "a"), Message("t/none", "b"), Message("t/sent", "c")])
    assert failed.outcome is PublishOutcome.RETRY
    assert [r.outcome for r in failed.items] == [PublishOutcome.RETRY, PublishOutcome.NO_SUBSCRIBERS,
                                                 PublishOutcome.SENT]
    assert [r.published for r in failed.items] == [False, True, True]

    before = len(fake[0].published)
    rejected = await bulk(url, [Message("t/sent", "a"), Message("bad/#", "b")])
    assert rejected.outcome is PublishOutcome.REJECTED
    assert [r.outcome for r in rejected.items] == [PublishOutcome.REJECTED] * 2
    assert rejected.items[0].reason_code == 144
    assert len(fake[0].published) == before  # nothing from a refused batch

    assert (await bulk(url, [])).items == ()


def test_odd_publish_answers_are_classified_by_status() -> None:
    assert classify_publish(200, None) == PublishResult(PublishOutcome.SENT)
    assert classify_publish(202, {"id": "x"}) == PublishResult(PublishOutcome.NO_SUBSCRIBERS)
    assert classify_publish(400, {"code": "BAD_REQUEST", "message": "qos: out of range"}) == PublishResult(
        PublishOutcome.REJECTED, None, None, "qos: out of range")
    short = classify_bulk(503, [{"id": "a"}], 2)  # an answer that does not match the batch
    assert short.items == (PublishResult(PublishOutcome.RETRY),) * 2
    assert classify_bulk(200, "?", 1).items == (PublishResult(PublishOutcome.SENT),)


def test_per_node_rows_are_summed() -> None:
    rows = [{"node": "a", "messages.sent": 2, "bytes.sent": 5}, {"node": "b", "messages.sent": 3}]
    assert aggregate(rows) == {"messages.sent": 5, "bytes.sent": 5}
    assert aggregate({"messages.sent": 1}) == {"messages.sent": 1}
    with pytest.raises(AppError, match="unexpected answer"):
        aggregate("nonsense")
