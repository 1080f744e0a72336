"""The delivery's HTTP client: POSTs over keep-alive HTTP/1.1 connections, kept per origin (issue 21).

Made for the one thing the pump does, many thousand times a second: a small POST, a small answer. Against aiohttp
(what it replaces; scripts/bench_http_clients.py) it skips what costs there per request: URL objects, header
multidicts, a timeout context and a task or two, tracing, cookies. A request is one write of prebuilt bytes (the
origin's head is encoded once) and an answer is parsed by httptools (C, llhttp: what uvicorn parses with).

- Connections per origin (scheme, host, port) are reused while the server keeps them alive; at most `keep` idle
  ones are kept per origin. A request that a reused connection loses before any byte of the answer came (the server
  closed it while idle, as servers do after their keep-alive time) is sent once more on a new connection.
- Host names are resolved by the resolver given (urlguard.GuardedResolver: the SSRF guard); an https connection
  checks the certificate against the host name (the default SSL context).
- An answer is read up to `read_limit` bytes of body; a longer one is cut and its connection closed.
- Failures raise `HttpError` with the sender's vocabulary (sender.py): timeout, connection: …, tls: …,
  ssrf_blocked.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import httptools
import yarl

from adapter.delivery import urlguard

READ_LIMIT = 16 * 1024


class HttpError(Exception):
    """A request that got no (complete) answer; `str(exc)` is the sender's error text."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str  # as the URL spells it (IDNA, no brackets): what is resolved, checked and sent as Host
    port: int

    @classmethod
    def of(cls, url: yarl.URL) -> Origin:
        return cls(url.scheme, url.raw_host or "", url.port or (443 if url.scheme == "https" else 80))


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, read_limit: int) -> None:
        self.read_limit = read_limit
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.got_bytes = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.retry_after: str | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.cut = False
        self.keep_alive = False
        self.framed = False  # a Content-Length or Transfer-Encoding: else the body ends with the connection

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpError("connection: bad answer (an upgrade)"))
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"connection: bad answer ({exc})"[:200]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.status and not self.framed:  # an answer without a length ends with its connection
                self.waiter.set_result(Answer(self.status, self.retry_after, b"".join(self.body)))
            elif not self.waiter.done():
                self.waiter.set_exception(HttpError("connection: server disconnected"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif lower in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, chunk: bytes) -> None:
        room = self.read_limit - self.size
        if room <= 0:
            self.cut = True
            return
        self.body.append(chunk[:room])
        self.size += min(len(chunk), room)
        if len(chunk) > room:
            self.cut = True

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self._reset()
            return
        self.keep_alive = self.parser.should_keep_alive()  # read now: the parser starts over after this
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self.status, self.retry_after, b"".join(self.body)))

    def _fail(self, exc: HttpError) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    # the client's side
    def send(self, data: bytes) -> asyncio.Future[Answer]:
        self._reset()
        self.got_bytes = False
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter

    def reusable(self) -> bool:
        return not self.closed and not self.cut and self.keep_alive and \
            self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass
class _Pool:
    idle: list[_Conn] = field(default_factory=list)


class Http1Client:
    def __init__(self, resolver: Any, *, keep: int = 64, read_limit: int = READ_LIMIT, user_agent: str = "") -> None:
        self.resolver = resolver  # urlguard.GuardedResolver (or any aiohttp-style resolver)
        self.keep = keep
        self.read_limit = read_limit
        self.user_agent = user_agent
        self.pools: dict[Origin, _Pool] = {}
        self.heads: dict[tuple[Origin, str], bytes] = {}
        self._ssl: ssl.SSLContext | None = None
        self.closed = False

    async def post(self, url: yarl.URL, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
        """POST `body` to `url` with `headers` (beside Host, User-Agent, Content-Length); the answer within
        `timeout` seconds, or HttpError."""
        origin = Origin.of(url)
        data = self._head(origin, url) + _headers(headers) + b"Content-Length: %d\r\n\r\n" % len(body) + body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pool = self.pools.get(origin)
        if pool is None:
            pool = self.pools[origin] = _Pool()
        while pool.idle:
            conn = pool.idle.pop()
            if not conn.reusable():
                conn.close()
                continue
            try:
                return await self._exchange(pool, conn, data, deadline)
            except HttpError:
                if conn.got_bytes:  # it answered something: a real failure, not a connection gone idle
                    raise
            break  # lost before any answer: once more, on a new connection
        conn = await self._connect(origin, deadline)
        return await self._exchange(pool, conn, data, deadline)

    def _head(self, origin: Origin, url: yarl.URL) -> bytes:
        target = url.raw_path_qs or "/"
        head = self.heads.get((origin, target))
        if head is None:
            default = 443 if origin.scheme == "https" else 80
            host = f"[{origin.host}]" if ":" in origin.host else origin.host
            host = host if origin.port == default else f"{host}:{origin.port}"
            head = (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {self.user_agent}\r\n"
                    f"Accept: */*\r\n").encode("latin-1")
            if len(self.heads) > 10_000:
                self.heads.clear()
            self.heads[(origin, target)] = head
        return head

    async def _exchange(self, pool: _Pool, conn: _Conn, data: bytes, deadline: float) -> Answer:
        waiter = conn.send(data)
        loop = asyncio.get_running_loop()
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            answer = await waiter
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        if conn.reusable() and len(pool.idle) < self.keep and not self.closed:
            pool.idle.append(conn)
        else:
            conn.close()
        return answer

    async def _connect(self, origin: Origin, deadline: float) -> _Conn:
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                found = [{"host": origin.host}] if urlguard.looks_like_ip(origin.host) else \
                    await self.resolver.resolve(origin.host, origin.port)
                errors: list[OSError] = []
                for address in found:
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Conn(self.read_limit), address["host"], origin.port,
                            ssl=self._context() if origin.scheme == "https" else None,
                            server_hostname=origin.host if origin.scheme == "https" else None)
                        return conn
                    except ssl.SSLError as exc:
                        raise HttpError(f"tls: {_short(exc)}") from None
                    except OSError as exc:
                        errors.append(exc)
                raise HttpError(f"connection: {_oserror(errors[-1]) if errors else 'no address'}")
        except urlguard.SsrfBlocked:
            raise HttpError("ssrf_blocked") from None
        except TimeoutError:
            raise HttpError("timeout") from None
        except OSError as exc:  # the resolver's (name not found)
            raise HttpError("connection: cannot resolve host" if isinstance(exc, _DNS) else
                            f"connection: {_oserror(exc)}") from None

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def aclose(self) -> None:
        self.closed = True
        for pool in self.pools.values():
            for conn in pool.idle:
                conn.close()
            pool.idle.clear()


_DNS = (socket.gaierror,)


def _expire(waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpError("timeout"))


def _headers(headers: dict[str, str]) -> bytes:
    """The header lines (UTF-8, as aiohttp sent them); a value with a line break or NUL cannot be sent."""
    text = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    if text.count("\n") != len(headers) or text.count("\r") != len(headers) or "\0" in text:
        raise HttpError("invalid_header: a header holds a line break or NUL")
    return text.encode()


def _oserror(exc: OSError) -> str:
    return (exc.strerror or _short(exc))[:160]


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:160]
