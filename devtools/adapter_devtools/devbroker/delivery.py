"""Event delivery as EMQX's HTTP action does it: one POST per event, in order per client id.

- 2xx: delivered. 429, 503 and connection errors/timeouts: retried with backoff until the event is
  `retry_ttl` seconds old (EMQX `request_ttl`, 45 s by default), then dropped as expired. Any other
  status (400, 401, 404, 500 …): dropped at once and counted (EMQX: "unrecoverable").
- Each client id has its own lane (a FIFO drained by one task); lanes run concurrently with at most
  `concurrency` requests in flight. A lane stuck retrying delays only that client's events.
- `submit` never blocks and never raises: the broker's loop must not wait on the ingest. Past
  `max_pending` queued events new ones are dropped (`events.queue_full`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from adapter_devtools.devbroker.counters import Counters

log = logging.getLogger(__name__)

EMQX_HEADERS = {
    "accept": "application/json",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "content-type": "application/json",
    "keep-alive": "timeout=5",
}


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    DROP = "drop"


def classify(status: int | None) -> Outcome:
    """None stands for a connection error or timeout."""
    if status is None or status in (429, 503):
        return Outcome.RETRY
    return Outcome.OK if 200 <= status < 300 else Outcome.DROP


def retry_delay(attempt: int) -> float:
    return float(min(0.05 * 2**attempt, 2.0))


def request_headers(token: str | None) -> dict[str, str]:
    return {**EMQX_HEADERS, "authorization": f"Bearer {token}"} if token else dict(EMQX_HEADERS)


@dataclass
class _Pending:
    body: bytes
    deadline: float


class EventPoster:
    def __init__(self, url: str | None, token: str | None, counters: Counters, *, retry_ttl: float = 45.0,
                 max_pending: int = 100_000, concurrency: int = 16, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._counters = counters
        self._ttl = retry_ttl
        self._max_pending = max_pending
        self._clock = clock
        self._headers = request_headers(token)
        self._slots = asyncio.Semaphore(concurrency)
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport,
                                         limits=httpx.Limits(max_connections=concurrency))
        self._lanes: dict[str, deque[_Pending]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending = 0

    def submit(self, key: str, body: dict[str, Any]) -> None:
        if self.url is None:
            self._counters.count("events.unsent")
            return
        if self.pending >= self._max_pending:
            self._counters.count("events.queue_full")
            return
        item = _Pending(orjson.dumps(body), self._clock() + self._ttl)
        self.pending += 1
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(item)
            return
        lane = self._lanes[key] = deque([item])
        task = asyncio.get_running_loop().create_task(self._drain(key, lane))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: str, lane: deque[_Pending]) -> None:
        try:
            while lane:
                try:
                    await self._deliver(lane[0])
                except Exception:
                    log.exception("devbroker: event delivery failed")
                    self._counters.count("events.dropped")
                lane.popleft()
                self.pending -= 1
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _deliver(self, item: _Pending) -> None:
        attempt = 0
        while True:
            if self._clock() >= item.deadline:
                log.warning("devbroker: event given up after %s s of retries", self._ttl)
                self._counters.count("events.expired")
                return
            status = await self._attempt(item.body)
            outcome = classify(status)
            if outcome is Outcome.OK:
                self._counters.count("events.posted")
                return
            if outcome is Outcome.DROP:
                log.warning("devbroker: ingest answered %s; event dropped", status)
                self._counters.count("events.dropped")
                return
            self._counters.count("events.retried")
            await asyncio.sleep(min(retry_delay(attempt), max(0.0, item.deadline - self._clock())))
            attempt += 1

    async def _attempt(self, body: bytes) -> int | None:
        assert self.url is not None
        async with self._slots:
            try:
                response = await self._client.post(self.url, content=body, headers=self._headers)
            except httpx.TransportError as exc:
                log.debug("devbroker: ingest unreachable: %r", exc)
                return None
        if response.status_code >= 300:
            log.debug("devbroker: ingest answered %s", response.status_code)
        return response.status_code

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted event is delivered or given up; False on timeout."""
        deadline = self._clock() + timeout
        while self.pending and self._clock() < deadline:
            await asyncio.sleep(0.01)
        return not self.pending

    async def close(self, grace: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in set(self._tasks):
            task.cancel()
        for task in set(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending:
            self._counters.count("events.abandoned", self.pending)
            self.pending = 0
        await self._client.aclose()
