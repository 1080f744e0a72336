"""Coalesce the Redis writes of concurrent requests into shared pipelines: one round trip serves many.

A request submits its commands (RESP bytes, see resp.py) and awaits its own replies. While one batch is in
flight, new submissions gather; the next flush takes all of them. Nothing waits on a timer. Scripts are
loaded once; a NOSCRIPT reply (Redis restarted or flushed its script cache) loads them again and re-sends
only the submissions that got it (a script that answers NOSCRIPT did nothing).

On a Redis Cluster the same contract is kept by cluster_batcher.ClusterBatcher (routing by slot); `batcher_for`
picks the one that fits the client.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
import redis.exceptions

from adapter.store.scripts import LuaScript
from adapter.store.types import AsyncRedis

Commands = Sequence[bytes]
READ_TIMEOUT = 10.0  # s for all the replies of one batch


class Batching(Protocol):
    """What callers use of a batcher (this module's Batcher, or the ClusterBatcher)."""

    async def submit(self, commands: Commands) -> list[Any]:
        """Send `commands`; answer their replies once written (error replies as exception objects)."""

    async def load_scripts(self) -> None:
        """Load every script of the batcher (on every primary of a cluster)."""


def batcher_for(client: AsyncRedis, scripts: Iterable[LuaScript] = ()) -> Batching:
    """The batcher of `client`: one connection of its pool on one Redis, routed by slot on a cluster."""
    if isinstance(client, aioredis.Redis):
        return Batcher(client, scripts)
    from adapter.store.cluster_batcher import ClusterBatcher

    return ClusterBatcher(client, scripts)


class Coalescer:
    """The submit side both batchers share: submissions gather while a flush is in flight, the next flush takes
    them all, and each waiter gets its own replies (or the flush's error). Subclasses send: `_execute(groups)`
    answers one reply list per submission."""

    def __init__(self) -> None:
        self._pending: list[tuple[Commands, asyncio.Future[list[Any]]]] = []
        self._flushing = False

    async def submit(self, commands: Commands) -> list[Any]:
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

    async def _flush(self, batch: list[tuple[Commands, asyncio.Future[list[Any]]]]) -> None:
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

    async def _execute(self, groups: list[Commands]) -> list[list[Any]]:
        raise NotImplementedError


class Batcher(Coalescer):
    def __init__(self, client: aioredis.Redis, scripts: Iterable[LuaScript] = ()) -> None:
        super().__init__()
        self.client = client
        self.scripts = tuple(scripts)

    async def _execute(self, groups: list[Commands]) -> list[list[Any]]:
        results = await self._send(groups)
        retry = [i for i, r in enumerate(results) if any(_noscript(x) for x in r)]
        if retry:
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
            await conn.send_packed_command(b"".join(packed), check_health=False)
            replies: list[Any] = []
            async with asyncio.timeout(READ_TIMEOUT):  # one deadline for the batch, not one per reply
                for _ in packed:
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except redis.exceptions.ResponseError as exc:
                        replies.append(exc)
        except BaseException:
            await conn.disconnect()  # replies may be left unread on it
            raise
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


def _noscript(value: Any) -> bool:
    return isinstance(value, redis.exceptions.NoScriptError) or (
        isinstance(value, redis.exceptions.ResponseError) and str(value).startswith("NOSCRIPT"))
