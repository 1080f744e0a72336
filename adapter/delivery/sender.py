"""The HTTP side of outbound delivery: one POST to one target, reported as an `Attempt`, never raised.

`Sender` owns one aiohttp session (pooled keep-alive connections, created on first use inside the running
loop, closed by `aclose`). Redirects are not followed: a 3xx is an answer like any other, and
`retry.classify` fails it. Addresses are guarded (`urlguard`) unless private targets are allowed.

Error vocabulary of `Attempt.error` (set only when there is no status; `retry.classify` decides):
    timeout              no complete answer within the timeout                  → retry
    connection: …        refused, reset, closed early, name not found, bad HTTP → retry
    tls: …               handshake or certificate trouble                       → retry
    ssrf_blocked         the host is (or resolves only to) refused addresses    → fail
    invalid_url: …       aiohttp cannot send to this URL                        → fail
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from adapter.delivery import urlguard
from adapter.delivery.retry import Verdict, classify, retry_after
from adapter.errors import AppError

EXCERPT_CHARS = 256
READ_LIMIT = 16 * 1024
"""Bytes of an answer read at most: enough to keep the connection when answers are small, and a cap when
they are not (an answer read only in part closes its connection instead of returning it to the pool)."""
USER_AGENT = "emqx-device-adapter-webhooks/1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try: the status (None when there was no answer), how long it took, what went wrong without an
    answer, the start of the answer body, and the target's `Retry-After` in seconds."""

    status: int | None
    duration_ms: float
    error: str | None = None
    excerpt: str = ""
    retry_after: float | None = None

    @property
    def verdict(self) -> Verdict:
        return classify(self.status, self.error)


class Sender:
    """POSTs bodies to targets over one shared session. Use it from one event loop."""

    def __init__(self, *, allow_private: bool = False, limit: int = 100, limit_per_host: int = 0,
                 keepalive_timeout: float = 30.0) -> None:
        self.allow_private = allow_private
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None
        self._resolver: urlguard.GuardedResolver | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("Sender is closed")
        if self._session is None:
            self._resolver = urlguard.GuardedResolver(self.allow_private)
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit_per_host,
                                             keepalive_timeout=self._keepalive, resolver=self._resolver)
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                                  headers={"User-Agent": USER_AGENT}, trust_env=False)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
        started = time.perf_counter()
        refused = self._refuse(url)
        if refused is not None:
            return Attempt(None, _ms(started), refused)
        session = self._open()
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                status, wait = resp.status, retry_after(resp.headers.get("Retry-After"), time.time())
                data = await _read_capped(resp)
        except Exception as exc:  # every failure to get an answer becomes data
            error = describe(exc)
            if error is None:
                raise
            return Attempt(None, _ms(started), error)
        return Attempt(status, _ms(started), None, excerpt(data), wait)

    def _refuse(self, url: str) -> str | None:
        """Checks that need no network: the URL's shape, and IP-literal hosts (which skip the resolver)."""
        try:
            urlguard.check_url(url)
        except AppError as exc:
            return f"invalid_url: {exc.msg.removeprefix('url: ')}"
        if not self.allow_private and urlguard.literal_refused(urlguard.target_host(url)):
            return "ssrf_blocked"
        return None

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """Up to READ_LIMIT bytes of the answer; a failure after the status line keeps what was read."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < READ_LIMIT:
            chunk = await resp.content.read(READ_LIMIT - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, TimeoutError):
        pass
    return b"".join(chunks)


def excerpt(data: bytes) -> str:
    return data[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]


def describe(exc: BaseException) -> str | None:
    """The `Attempt.error` for an exception raised while sending, or None for one that is a bug."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError) and isinstance(exc.os_error, urlguard.SsrfBlocked):
        return "ssrf_blocked"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return f"invalid_url: {_short(exc)}"
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return f"tls: {_short(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "connection: cannot resolve host"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection: {exc.os_error.strerror or _short(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection: server disconnected"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"connection: bad answer ({exc.message})"[:200]
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"connection: {_short(exc)}"
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:160]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000

