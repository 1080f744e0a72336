"""Sender against a real loopback receiver (Starlette under uvicorn): answers, failures, SSRF, signatures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
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

pytestmark = pytest.mark.layout_free  # the HTTP client of deliveries: run once, on one Redis

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


async def run(make: Callable[[Sender], Awaitable[T]], *, allow_private: bool = True) -> T:
    sender = Sender(allow_private=allow_private, limit=8)
    try:
        return await make(sender)
    finally:
        await sender.aclose()


async def post(url: str, body: bytes = b"{}", *, timeout: float = 5.0, allow_private: bool = True,
               headers: dict[str, str] | None = None) -> Attempt:
    return await run(lambda s: s.post(url, body, headers or {"content-type": "application/json"}, timeout),
                     allow_private=allow_private)


async def test_200_is_success_with_excerpt(receiver: Receiver) -> None:
    a = await post(f"{receiver.url}/status/200", b'{"n":1}')
    assert (a.status, a.error, a.excerpt, a.verdict) == (200, None, "answer 200", "success")
    assert a.duration_ms > 0
    assert [(s.path, s.body) for s in receiver.seen] == [("/status/200", b'{"n":1}')]


@pytest.mark.parametrize(("code", "verdict"), [(500, "retry"), (503, "retry"), (408, "retry"),
                                               (400, "fail"), (410, "fail"), (404, "fail")])
async def test_error_statuses(receiver: Receiver, code: int, verdict: str) -> None:
    a = await post(f"{receiver.url}/status/{code}")
    assert (a.status, a.error, a.excerpt, a.verdict) == (code, None, f"answer {code}", verdict)


async def test_429_reports_retry_after(receiver: Receiver) -> None:
    a = await post(f"{receiver.url}/status/429?retry_after=7")
    assert (a.status, a.retry_after, a.verdict) == (429, 7.0, "retry")


async def test_hang_past_the_timeout_is_a_timeout(receiver: Receiver) -> None:
    a = await post(f"{receiver.url}/hang", timeout=0.5)
    assert (a.status, a.error, a.verdict) == (None, "timeout", "retry")
    assert 400 <= a.duration_ms < 3000
    assert [s.path for s in receiver.seen] == ["/hang"]


async def test_closed_port_is_a_connection_error() -> None:
    a = await post(f"http://127.0.0.1:{free_port()}/x")
    assert a.status is None
    assert a.error is not None and a.error.startswith("connection: ")
    assert a.verdict == "retry"


async def test_redirect_is_not_followed(receiver: Receiver) -> None:
    a = await post(f"{receiver.url}/redirect")
    assert (a.status, a.error, a.verdict) == (302, None, "fail")
    assert [s.path for s in receiver.seen] == ["/redirect"]


async def test_large_answer_is_cut(receiver: Receiver) -> None:
    a = await post(f"{receiver.url}/big")
    assert a.status == 200
    assert a.excerpt == "é" * EXCERPT_CHARS


async def test_invalid_url_fails_without_network() -> None:
    a = await post("ftp://example.com/x")
    assert a.error is not None and a.error.startswith("invalid_url: ")
    assert a.verdict == "fail"


async def test_connections_are_kept_alive(receiver: Receiver) -> None:
    async def twice(s: Sender) -> list[Attempt]:
        return [await s.post(f"{receiver.url}/status/200", b"{}", {}, 5) for _ in range(3)]
    assert [a.status for a in await run(twice)] == [200, 200, 200]
    assert len({s.client_port for s in receiver.seen}) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1"])
async def test_ssrf_blocked_without_allow_private(receiver: Receiver, host: str) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    a = await post(f"http://{host}:{port}/status/200", allow_private=False)
    assert (a.status, a.error, a.verdict) == (None, "ssrf_blocked", "fail")
    assert receiver.seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allow_private_goes_through(receiver: Receiver, host: str) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    a = await post(f"http://{host}:{port}/status/200", allow_private=True)
    assert (a.status, a.error) == (200, None)
    assert len(receiver.seen) == 1


async def test_signed_requests_verify_with_standardwebhooks(receiver: Receiver) -> None:
    secret = signing.new_secret()
    body = b'{"event":"client.connected","clientid":"dev-1"}'
    headers = signing.headers(signing.secret_bytes(secret), "msg_1", int(time.time()), body)
    a = await post(f"{receiver.url}/status/204", body, headers=headers)
    assert a.status == 204
    (seen,) = receiver.seen
    got: Any = Webhook(secret).verify(seen.body, seen.headers)
    assert got == {"event": "client.connected", "clientid": "dev-1"}
    assert seen.headers["webhook-id"] == "msg_1"
    assert seen.headers["content-type"] == "application/json"


async def test_post_after_aclose_is_refused() -> None:
    s = Sender()
    await s.aclose()
    with pytest.raises(RuntimeError):
        await s.post("http://example.com/", b"", {}, 1)


@asynccontextmanager
async def sending_to(server: asyncio.Server) -> AsyncIterator[tuple[Sender, int]]:
    """A sender and the port of `server` (a raw TCP server of the test's own), both closed after."""
    sender = Sender(allow_private=True)
    try:
        yield sender, server.sockets[0].getsockname()[1]
    finally:
        await sender.aclose()
        server.close()
        await server.wait_closed()


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
async def test_broken_answers_are_connection_errors(answer: bytes, error: str) -> None:
    async with sending_to(await raw_server(answer)) as (sender, port):
        a = await sender.post(f"http://127.0.0.1:{port}/x", b"{}", {}, 5)
    assert a.status is None and a.error is not None and a.error.startswith(error), a.error
    assert a.verdict == "retry"


Script = list[bytes | tuple[bytes, str] | None]


async def scripted_server(answers: Script) -> tuple[asyncio.Server, list[int]]:
    """A TCP server that reads requests and, per request (across connections, in order), writes the next of
    `answers` verbatim and keeps the connection; `(answer, "close")` closes it after the answer, None closes it
    without one. Answers which connection (its count from 1) each request came on."""
    on: list[int] = []
    seen = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        conn = seen
        try:
            while answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))
                await reader.readexactly(length)
                on.append(conn)
                answer = answers.pop(0)
                if answer is None:
                    break
                writer.write(answer if isinstance(answer, bytes) else answer[0])
                await writer.drain()
                if not isinstance(answer, bytes):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0), on


async def on_server(answers: Script, posts: int,
                    headers: dict[str, str] | None = None) -> tuple[list[Attempt], list[int]]:
    server, on = await scripted_server(answers)
    async with sending_to(server) as (sender, port):
        return [await sender.post(f"http://127.0.0.1:{port}/x", b"{}", headers or {}, 5) for _ in range(posts)], on


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_a_request_lost_on_a_connection_the_server_dropped_goes_again_on_a_new_one() -> None:
    """The second request goes on the kept connection, which the server drops without a byte of answer (as a
    server does when its keep-alive time ran out just then): it is sent once more, on a new connection."""
    attempts, on = await on_server([OK, None, OK], 2)
    assert [a.status for a in attempts] == [200, 200]
    assert on == [1, 1, 2]


async def test_a_connection_that_answered_part_of_an_answer_is_not_tried_again() -> None:
    attempts, on = await on_server([OK, (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "close")], 2)
    assert attempts[1].status is None and attempts[1].error == "connection: server disconnected"
    assert on == [1, 1]


async def test_answers_without_a_length_or_chunked_are_read() -> None:
    chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    until_close = b"HTTP/1.0 202 Accepted\r\n\r\nuntil close"
    attempts, on = await on_server([chunked, (until_close, "close")], 2)
    assert [(a.status, a.excerpt) for a in attempts] == [(201, "abcde"), (202, "until close")]
    assert on == [1, 1]


async def test_an_http_1_0_answer_or_connection_close_is_not_kept() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    attempts, on = await on_server([closing, OK], 2)
    assert [a.status for a in attempts] == [200, 200]
    assert on == [1, 2]


async def test_a_header_value_with_a_line_break_fails_at_once() -> None:
    attempts, on = await on_server([OK], 1, headers={"webhook-id": "d:EVIL\r\nX-Injected: 1:2:callback:1"})
    assert attempts[0].status is None and attempts[0].error is not None
    assert attempts[0].error.startswith("invalid_header") and attempts[0].verdict == "fail"
    assert on == []


async def test_an_interim_answer_is_skipped() -> None:
    attempts, _ = await on_server([b"HTTP/1.1 100 Continue\r\n\r\n" + OK], 1)
    assert attempts[0].status == 200 and attempts[0].excerpt == "ok"


async def test_a_certificate_nobody_signed_is_a_tls_error(tmp_path: Any) -> None:
    """https checks the server's certificate (the default SSL context): a self-signed one fails the handshake,
    a `tls:` error (retried: the target may fix its certificate)."""
    import ssl
    import subprocess

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with sending_to(await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)) as (sender, port):
        a = await sender.post(f"https://127.0.0.1:{port}/x", b"{}", {}, 5)
    assert a.status is None and a.error is not None and a.error.startswith("tls:"), a.error
    assert a.verdict == "retry"
