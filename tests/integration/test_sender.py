"""Sender against a real loopback receiver (Starlette under uvicorn): answers, failures, SSRF, signatures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from adapter.delivery import signing
from adapter.delivery.sender import EXCERPT_CHARS, Attempt, Sender
from tests.support.servers import free_port, serve

T = TypeVar("T")


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class Receiver:
    url: str
    seen: list[Seen] = field(default_factory=list)


def receiver_app(seen: list[Seen]) -> Starlette:
    async def record(request: Request) -> None:
        port = request.client.port if request.client else 0
        seen.append(Seen(request.url.path, dict(request.headers), await request.body(), port))

    async def status(request: Request) -> Response:
        await record(request)
        code = int(request.path_params["code"])
        wait = request.query_params.get("retry_after")
        headers = {"Retry-After": wait} if wait is not None else {}
        return PlainTextResponse(f"answer {code}", status_code=code, headers=headers)

    async def hang(request: Request) -> Response:
        await record(request)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not await request.is_disconnected():
            await asyncio.sleep(0.02)
        return PlainTextResponse("late")

    async def redirect(request: Request) -> Response:
        await record(request)
        return RedirectResponse("/status/200", status_code=302)

    async def big(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("é" * 200_000)

    return Starlette(routes=[
        Route("/status/{code:int}", status, methods=["POST"]),
        Route("/hang", hang, methods=["POST"]),
        Route("/redirect", redirect, methods=["POST"]),
        Route("/big", big, methods=["POST"]),
    ])


@pytest.fixture(scope="module")
def server() -> Iterator[Receiver]:
    seen: list[Seen] = []
    with serve(receiver_app(seen), lifespan="off") as url:
        yield Receiver(url, seen)


@pytest.fixture
def receiver(server: Receiver) -> Receiver:
    server.seen.clear()
    return server


def run(make: Callable[[Sender], Awaitable[T]], *, allow_private: bool = True) -> T:
    async def go() -> T:
        sender = Sender(allow_private=allow_private, limit=8)
        try:
            return await make(sender)
        finally:
            await sender.aclose()
    return asyncio.run(go())


def post(url: str, body: bytes = b"{}", *, timeout: float = 5.0, allow_private: bool = True,
         headers: dict[str, str] | None = None) -> Attempt:
    return run(lambda s: s.post(url, body, headers or {"content-type": "application/json"}, timeout),
               allow_private=allow_private)


def test_200_is_success_with_excerpt(receiver: Receiver) -> None:
    a = post(f"{receiver.url}/status/200", b'{"n":1}')
    assert (a.status, a.error, a.excerpt, a.verdict) == (200, None, "answer 200", "success")
    assert a.duration_ms > 0
    assert [(s.path, s.body) for s in receiver.seen] == [("/status/200", b'{"n":1}')]


@pytest.mark.parametrize(("code", "verdict"), [(500, "retry"), (503, "retry"), (408, "retry"),
                                               (400, "fail"), (410, "fail"), (404, "fail")])
def test_error_statuses(receiver: Receiver, code: int, verdict: str) -> None:
    a = post(f"{receiver.url}/status/{code}")
    assert (a.status, a.error, a.excerpt, a.verdict) == (code, None, f"answer {code}", verdict)


def test_429_reports_retry_after(receiver: Receiver) -> None:
    a = post(f"{receiver.url}/status/429?retry_after=7")
    assert (a.status, a.retry_after, a.verdict) == (429, 7.0, "retry")


def test_hang_past_the_timeout_is_a_timeout(receiver: Receiver) -> None:
    a = post(f"{receiver.url}/hang", timeout=0.5)
    assert (a.status, a.error, a.verdict) == (None, "timeout", "retry")
    assert 400 <= a.duration_ms < 3000
    assert [s.path for s in receiver.seen] == ["/hang"]


def test_closed_port_is_a_connection_error() -> None:
    a = post(f"http://127.0.0.1:{free_port()}/x")
    assert a.status is None
    assert a.error is not None and a.error.startswith("connection: ")
    assert a.verdict == "retry"


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    a = post(f"{receiver.url}/redirect")
    assert (a.status, a.error, a.verdict) == (302, None, "fail")
    assert [s.path for s in receiver.seen] == ["/redirect"]


def test_large_answer_is_cut(receiver: Receiver) -> None:
    a = post(f"{receiver.url}/big")
    assert a.status == 200
    assert a.excerpt == "é" * EXCERPT_CHARS


def test_invalid_url_fails_without_network() -> None:
    a = post("ftp://example.com/x")
    assert a.error is not None and a.error.startswith("invalid_url: ")
    assert a.verdict == "fail"


def test_connections_are_kept_alive(receiver: Receiver) -> None:
    async def twice(s: Sender) -> list[Attempt]:
        return [await s.post(f"{receiver.url}/status/200", b"{}", {}, 5) for _ in range(3)]
    assert [a.status for a in run(twice)] == [200, 200, 200]
    assert len({s.client_port for s in receiver.seen}) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1"])
def test_ssrf_blocked_without_allow_private(receiver: Receiver, host: str) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    a = post(f"http://{host}:{port}/status/200", allow_private=False)
    assert (a.status, a.error, a.verdict) == (None, "ssrf_blocked", "fail")
    assert receiver.seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_allow_private_goes_through(receiver: Receiver, host: str) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    a = post(f"http://{host}:{port}/status/200", allow_private=True)
    assert (a.status, a.error) == (200, None)
    assert len(receiver.seen) == 1


def test_signed_requests_verify_with_standardwebhooks(receiver: Receiver) -> None:
    secret = signing.new_secret()
    body = b'{"event":"client.connected","clientid":"dev-1"}'
    headers = signing.headers(signing.secret_bytes(secret), "msg_1", int(time.time()), body)
    a = post(f"{receiver.url}/status/204", body, headers=headers)
    assert a.status == 204
    (seen,) = receiver.seen
    got: Any = Webhook(secret).verify(seen.body, seen.headers)
    assert got == {"event": "client.connected", "clientid": "dev-1"}
    assert seen.headers["webhook-id"] == "msg_1"
    assert seen.headers["content-type"] == "application/json"


def test_post_after_aclose_is_refused() -> None:
    async def go() -> None:
        s = Sender()
        await s.aclose()
        with pytest.raises(RuntimeError):
            await s.post("http://example.com/", b"", {}, 1)
    asyncio.run(go())


async def raw_server(answer: bytes) -> asyncio.Server:
    """A TCP server that reads the request head, writes `answer` verbatim and closes."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(("answer", "error"), [
    (b"", "connection: server disconnected"),
    (b"NOT HTTP AT ALL\r\n\r\n", "connection: bad answer"),
])
def test_broken_answers_are_connection_errors(answer: bytes, error: str) -> None:
    async def go() -> Attempt:
        server = await raw_server(answer)
        port = server.sockets[0].getsockname()[1]
        sender = Sender(allow_private=True)
        try:
            return await sender.post(f"http://127.0.0.1:{port}/x", b"{}", {}, 5)
        finally:
            await sender.aclose()
            server.close()
            await server.wait_closed()
    a = asyncio.run(go())
    assert a.status is None and a.error is not None and a.error.startswith(error), a.error
    assert a.verdict == "retry"
