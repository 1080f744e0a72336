"""The HTTP side of outbound delivery: one POST to one target, reported as an `Attempt`, never raised.

`Sender` owns one HTTP/1.1 client (http1.py: keep-alive connections per origin, created on first use inside the
running loop, closed by `aclose`). Redirects are not followed: a 3xx is an answer like any other, and
`retry.classify` fails it. Addresses are guarded (`urlguard`) unless private targets are allowed.

Error vocabulary of `Attempt.error` (set only when there is no status; `retry.classify` decides):
    timeout              no complete answer within the timeout                  → retry
    connection: …        refused, reset, closed early, name not found, bad HTTP → retry
    tls: …               handshake or certificate trouble                       → retry
    ssrf_blocked         the host is (or resolves only to) refused addresses    → fail
    invalid_url: …       the URL cannot be sent to                              → fail
    invalid_header: …    a header value cannot be sent (a line break in a device's id) → fail
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import yarl

from adapter.delivery import urlguard
from adapter.delivery.http1 import READ_LIMIT, Http1Client, HttpError
from adapter.delivery.retry import Verdict, classify, retry_after
from adapter.errors import AppError

EXCERPT_CHARS = 256
USER_AGENT = "emqx-device-adapter-webhooks/1"
MAX_TARGETS = 10_000  # URLs whose checks and parsed form are remembered
__all__ = ["EXCERPT_CHARS", "READ_LIMIT", "USER_AGENT", "Attempt", "Sender", "excerpt"]


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
    """POSTs bodies to targets over keep-alive connections. Use it from one event loop. `limit`: idle connections
    kept per target origin (the pump's in-flight cap per target bounds the open ones)."""

    def __init__(self, *, allow_private: bool = False, limit: int = 100) -> None:
        self.allow_private = allow_private
        self._limit = limit
        self._client: Http1Client | None = None
        self._resolver: urlguard.GuardedResolver | None = None
        self._closed = False
        self._targets: dict[str, tuple[str | None, yarl.URL | None]] = {}  # url -> (refused, parsed)

    def _open(self) -> Http1Client:
        if self._closed:
            raise RuntimeError("Sender is closed")
        if self._client is None:
            self._resolver = urlguard.GuardedResolver(self.allow_private)
            self._client = Http1Client(self._resolver, keep=self._limit, user_agent=USER_AGENT)
        return self._client

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
        started = time.perf_counter()
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        refused, parsed = target
        if parsed is None:
            return Attempt(None, _ms(started), refused)
        client = self._open()
        try:
            answer = await client.post(parsed, body, headers, timeout)
        except HttpError as exc:  # every failure to get an answer becomes data
            return Attempt(None, _ms(started), str(exc))
        return Attempt(answer.status, _ms(started), None, excerpt(answer.body),
                       retry_after(answer.retry_after, time.time()))

    def _target(self, url: str) -> tuple[str | None, yarl.URL | None]:
        """What the static checks say of `url` (None: it may be sent to) and its parsed form, once per URL (a few
        hundred targets at most; the cache is dropped when it grows past MAX_TARGETS)."""
        refused = self._refuse(url)
        parsed = None
        if refused is None:
            try:
                parsed = yarl.URL(url)
            except ValueError:
                refused = "invalid_url: cannot be parsed as a URL"
        if len(self._targets) >= MAX_TARGETS:
            self._targets.clear()
        self._targets[url] = (refused, parsed)
        return refused, parsed

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
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None


def excerpt(data: bytes) -> str:
    return data[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
