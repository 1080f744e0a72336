"""One primary's share of the cluster batcher (cluster_batcher.py): the commands routed to one node gather while
that node's previous batch is in flight, and the next batch takes them all, on one connection of the node, under a
deadline of the node's own. Every node has its lane, so a node that is dead or frozen holds up only the commands of
its own slots; the others' batches come and go meanwhile.

A command's future answers its reply: the value, an error reply as its exception object, or, when the node's batch
failed (refused connection, the deadline, a broken connection sent once more and broken again: batcher.exchange),
that failure, for every command of the batch. A NOSCRIPT reply loads the scripts on the node and sends those commands
once more within the batch. A command put while the batch in flight is older than SLOW_S tells the batcher
(`on_trouble`), which reloads the slot map: a replica promoted meanwhile gets the commands still waiting here
(`take`). The deadline covers the replies (batcher.exchange); a connect has the client's connect timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode

from adapter.store import faults, resp
from adapter.store.batcher import Confirm, exchange_confirmed, noscript
from adapter.store.scripts import Script

ASKING = b"*1\r\n$6\r\nASKING\r\n"
SLOW_S = 1.0  # a batch in flight this long: the node may be frozen, the slot map is reloaded


class Item:
    """One command in a lane: its packed bytes, its slot, whether ASKING goes first (a migrating slot), its reply."""

    __slots__ = ("asking", "command", "future", "slot")

    def __init__(self, command: bytes, slot: int | None, asking: bool, future: asyncio.Future[Any]) -> None:
        self.command, self.slot, self.asking, self.future = command, slot, asking, future


class Lane:
    def __init__(self, node: ClusterNode, scripts: Sequence[Script], deadline: float,
                 on_trouble: Callable[[Lane], None], confirm: Confirm | None = None) -> None:
        self.node = node
        self.confirm = confirm
        self.scripts = scripts
        self.deadline = deadline
        self.on_trouble = on_trouble
        self.pending: list[Item] = []
        self.busy_since: float | None = None  # loop time the batch in flight was sent, None when idle
        self.noscript = 0  # NOSCRIPT answers (figures for the batcher's stats)
        self.failures = 0  # batches that failed
        self.moved = self.ask = 0  # redirections the node answered
        self._task: asyncio.Task[None] | None = None

    def put(self, command: bytes, slot: int | None, asking: bool = False) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(Item(command, slot, asking, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        elif self.busy_since is not None and future.get_loop().time() - self.busy_since >= SLOW_S:
            self.on_trouble(self)  # the node may be frozen (the batcher reloads at most every REFRESH_S)
        return future

    def give(self, items: list[Item]) -> None:
        """Commands taken from another lane (their slots moved here): before this lane's own, they came first."""
        self.pending[:0] = items
        self._kick()

    def take(self, elsewhere: Callable[[Item], bool]) -> list[Item]:
        """The waiting commands (not the batch in flight) that `elsewhere` says now belong to another node."""
        moved = [item for item in self.pending if not item.asking and elsewhere(item)]
        if moved:
            self.pending = [item for item in self.pending if item.asking or not elsewhere(item)]
        return moved

    def slow(self, now: float) -> bool:
        return self.busy_since is not None and now - self.busy_since >= SLOW_S

    def _kick(self) -> None:
        if self._task is None and self.pending:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                self.busy_since = loop.time()
                try:
                    await self._flush(batch)
                finally:
                    self.busy_since = None
        finally:
            self._task = None
            self._kick()  # commands given meanwhile by another lane's take

    async def _flush(self, batch: list[Item]) -> None:
        try:
            replies = await self._send(batch)
        except BaseException as exc:
            failure = _failure(exc)
            for item in batch:
                if not item.future.done():
                    if failure is None:
                        item.future.set_exception(exc)
                    else:
                        item.future.set_result(failure)
            if failure is None and not isinstance(exc, Exception):
                raise
            if failure is not None:
                self.failures += 1
                self.on_trouble(self)
            return
        for item, reply in zip(batch, replies, strict=True):
            if not item.future.done():
                item.future.set_result(reply)

    async def _send(self, batch: list[Item]) -> list[Any]:
        conn = self.node.acquire_connection()
        try:
            replies = await _round(conn, batch, self.deadline, self.confirm)
            again = [i for i, reply in enumerate(replies) if noscript(reply)]
            if again:
                self.noscript += len(again)
                loads = b"".join(resp.pack("SCRIPT", "LOAD", script.script) for script in self.scripts)
                packed = loads + b"".join(batch[i].command for i in again)
                n = len(self.scripts) + len(again)
                got = await exchange_confirmed(conn, packed, n, self.confirm, self.deadline)
                for i, reply in zip(again, got[len(self.scripts):], strict=True):
                    replies[i] = reply
            return replies
        finally:
            self.node.release(conn)


async def _round(conn: Any, batch: list[Item], deadline: float, confirm: Confirm | None = None) -> list[Any]:
    """One batch on `conn`: its replies in order, the +OK of each ASKING dropped; with `confirm`, its WAIT after
    them (batcher.Confirm)."""
    packed = b"".join((ASKING + item.command) if item.asking else item.command for item in batch)
    replies = await exchange_confirmed(conn, packed, len(batch) + sum(item.asking for item in batch), confirm, deadline)
    if len(replies) == len(batch):
        return replies
    out, j = [], 0
    for item in batch:
        j += item.asking
        out.append(replies[j])
        j += 1
    return out


def _failure(exc: BaseException) -> BaseException | None:
    """What the commands of a failed batch answer: the Redis trouble as a Redis error (the ingest answers 503 on
    those), or None for a bug or a cancellation (raised to the waiters as it is)."""
    if isinstance(exc, asyncio.CancelledError) or not faults.trouble(exc):
        return None
    if isinstance(exc, redis.exceptions.RedisError | OSError):
        return exc
    return redis.exceptions.ConnectionError(f"{type(exc).__name__}: {exc}")
