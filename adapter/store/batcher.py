"""Coalesce the Redis writes of concurrent requests into shared pipelines: one round trip serves many.

A request submits its commands (RESP bytes, see resp.py) and awaits its own replies. While one batch is in
flight, new submissions gather; the next flush takes all of them. Nothing waits on a timer. Scripts are
loaded once; a NOSCRIPT reply (Redis restarted or flushed its script cache) loads them again and re-sends
only the submissions that got it (a script that answers NOSCRIPT did nothing).

A connection that breaks before the first reply of a round (`exchange`: typically a pooled connection the server
closed while it sat idle, a Redis restart ago) is connected again and the round sent once more, so a healthy Redis
never fails a request for a stale connection. Sending a round twice is safe because everything sent here is:
the ingest's scripts are idempotent by the event (message id; (clientid, connected_at): docs/design.md §4, the same
guarantee that makes EMQX's own redelivery harmless), and so are the delivery pump's outcome and hold scripts.

On a Redis Cluster the same contract is kept by cluster_batcher.ClusterBatcher (routing by slot);
`connections.batcher_for` picks the one that fits the client.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import redis.asyncio as aioredis
import redis.exceptions

from adapter.store import faults, resp
from adapter.store.scripts import Script

Commands = Sequence[bytes]
C = TypeVar("C")  # what a Coalescer's submissions are made of
READ_TIMEOUT = 10.0  # s for all the replies of one batch
NOSCRIPT_TRIES = 3  # loads and resends after NOSCRIPT replies, at most


class ReplicasBehind(redis.exceptions.RedisError):
    """The primary took a round's writes but fewer replicas than asked confirmed them in time (`Confirm`): the
    writes may not survive a failover, so the round's commands answer this (the ingest: 503, EMQX sends again)."""


class Confirm:
    """`WAIT replicas ms` after each round (ADAPTER_INGEST_WAIT_REPLICAS, ADAPTER_INGEST_WAIT_MS): a round is answered
    only once that many replicas have its writes. It closes the window in which a primary frozen past the failover
    answers the commands queued on its sockets and is then demoted, dropping them (docs/reliability.md)."""

    def __init__(self, replicas: int, ms: int) -> None:
        self.replicas = replicas
        self.packed = resp.pack("WAIT", replicas, ms)

    def check(self, replies: list[Any]) -> list[Any]:
        """The round's replies without the WAIT's; each one a ReplicasBehind when too few replicas confirmed."""
        acked, replies = replies[-1], replies[:-1]
        if isinstance(acked, int) and acked >= self.replicas:
            return replies
        behind = ReplicasBehind(f"{acked} of {self.replicas} replicas confirmed the writes in time")
        return [r if isinstance(r, Exception) else behind for r in replies]


def confirm_of(replicas: int, ms: int) -> Confirm | None:
    return Confirm(replicas, ms) if replicas > 0 else None


async def exchange_confirmed(conn: Any, packed: bytes, n: int, confirm: Confirm | None,
                             timeout: float | None = None) -> list[Any]:
    """`exchange`; with `confirm`, its WAIT after the `n` commands, checked (`Confirm.check`) and dropped."""
    if confirm is None:
        return await exchange(conn, packed, n, timeout)
    return confirm.check(await exchange(conn, packed + confirm.packed, n + 1, timeout))


class Batching(Protocol):
    """What callers use of a batcher (this module's Batcher, or the ClusterBatcher)."""

    async def submit(self, commands: Commands) -> list[Any]:
        """Send `commands`; answer their replies once written (error replies as exception objects)."""

    async def load_scripts(self) -> None:
        """Load every script of the batcher (on every primary of a cluster)."""


async def read_replies(conn: Any, n: int, replies: list[Any], timeout: float | None = None) -> list[Any]:
    """The next `n` replies on `conn`, appended to `replies` (so a caller sees how far it got), an error reply as its
    exception object; one deadline (`timeout`, READ_TIMEOUT when None: read when called) for all of them, not one per
    reply. On any failure the caller disconnects `conn` (replies may be left unread)."""
    async with asyncio.timeout(READ_TIMEOUT if timeout is None else timeout):
        for _ in range(n):
            try:
                replies.append(await conn.read_response(timeout=math.inf))
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
    return replies


def send_again(exc: BaseException, replies: int) -> bool:
    """Whether a round that failed with `exc` after `replies` replies is sent once more on a fresh connection: the
    connection broke (faults.connection_broken: not an answer, not a timeout) before anything came back."""
    return replies == 0 and faults.connection_broken(exc)


async def exchange(conn: Any, packed: bytes, n: int, timeout: float | None = None) -> list[Any]:
    """Write `packed` (`n` commands) on `conn` and read their replies. When the connection breaks before the first
    reply, `conn` is connected anew and the round sent once more (see the module). A failure to connect is not
    retried (the server is away, not the connection stale). On any failure `conn` is left disconnected."""
    if not conn.is_connected:
        await conn.connect()
    for attempt in range(2):
        replies: list[Any] = []
        try:
            await conn.send_packed_command(packed, check_health=False)
            return await read_replies(conn, n, replies, timeout)
        except BaseException as exc:
            await conn.disconnect()  # replies may be left unread on it
            if attempt or not send_again(exc, len(replies)):
                raise
    raise AssertionError("unreachable")


class Coalescer(Generic[C]):
    """The submit side both batchers (and the pump's outcome writer) share: submissions gather while a flush is in
    flight, the next flush takes them all, and each waiter gets its own replies (or the flush's error). Subclasses
    send: `_execute(groups)` answers one reply list per submission. A submission is a sequence of commands: packed
    RESP for the batchers (`Commands`), whatever the subclass sends otherwise."""

    def __init__(self) -> None:
        self._pending: list[tuple[Sequence[C], asyncio.Future[list[Any]]]] = []
        self._flushing = False

    async def submit(self, commands: Sequence[C]) -> list[Any]:
        """Send `commands`; answer their replies once written (error replies as exception objects)."""
        if not commands:
            return []
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._flush(batch)
        finally:
            self._flushing = False

    async def _flush(self, batch: list[tuple[Sequence[C], asyncio.Future[list[Any]]]]) -> None:
        try:
            results = await self._execute([commands for commands, _ in batch])
        except BaseException as exc:  # connection lost, timeout, too many redirections: every waiter gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _execute(self, groups: list[Sequence[C]]) -> list[list[Any]]:
        raise NotImplementedError


class Batcher(Coalescer[bytes]):
    def __init__(self, client: aioredis.Redis, scripts: Iterable[Script] = (), confirm: Confirm | None = None) -> None:
        super().__init__()
        self.client = client
        self.scripts = tuple(scripts)
        self.confirm = confirm

    async def _execute(self, groups: list[Commands]) -> list[list[Any]]:
        results = await self._send(groups)
        for _ in range(NOSCRIPT_TRIES):  # a cache flushed again between the load and the resend: once more
            retry = [i for i, r in enumerate(results) if any(noscript(x) for x in r)]
            if not retry:
                break
            await self.load_scripts()
            again = await self._send([groups[i] for i in retry])
            for i, r in zip(retry, again, strict=True):
                results[i] = r
        return results

    async def _send(self, groups: list[Commands]) -> list[list[Any]]:
        packed = [c for group in groups for c in group]
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        try:
            replies = await exchange_confirmed(conn, b"".join(packed), len(packed), self.confirm)
        finally:
            await pool.release(conn)
        out, i = [], 0
        for group in groups:
            out.append(replies[i:i + len(group)])
            i += len(group)
        return out

    async def load_scripts(self) -> None:
        for script in self.scripts:
            await self.client.script_load(script.script)


def noscript(value: Any) -> bool:
    """A NOSCRIPT reply (the script is not loaded on that node: load it, send again)."""
    return isinstance(value, redis.exceptions.NoScriptError) or (
        isinstance(value, redis.exceptions.ResponseError) and str(value).startswith("NOSCRIPT"))
