"""Coalesce the Redis writes of concurrent requests into shared pipelines: one round trip serves many.

A request submits a function that queues its commands on a pipeline and awaits its own results. While
one pipeline is in flight, new submissions gather; the next flush takes all of them. Nothing waits on a
timer. Scripts are loaded once; a NOSCRIPT answer (Redis restarted or flushed its script cache) loads them
again and re-runs only the submissions that got it (a script that answers NOSCRIPT did nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from adapter.presence_store import LuaScript

Build = Callable[[Any], None]


class Batcher:
    def __init__(self, client: aioredis.Redis, scripts: Iterable[LuaScript] = ()) -> None:
        self.client = client
        self.scripts = tuple(scripts)
        self._pending: list[tuple[Build, asyncio.Future[list[Any]]]] = []
        self._flushing = False

    async def submit(self, build: Build) -> list[Any]:
        """Queue `build`'s commands; answer their results once they are written (errors as exceptions)."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((build, future))
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

    async def _flush(self, batch: list[tuple[Build, asyncio.Future[list[Any]]]]) -> None:
        try:
            results = await self._execute([build for build, _ in batch])
        except Exception as exc:  # connection lost, timeout: every waiter gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _execute(self, builds: list[Build]) -> list[list[Any]]:
        results = await self._run(builds)
        retry = [i for i, r in enumerate(results) if any(_noscript(x) for x in r)]
        if retry:
            await self.load_scripts()
            again = await self._run([builds[i] for i in retry])
            for i, r in zip(retry, again, strict=True):
                results[i] = r
        return results

    async def _run(self, builds: list[Build]) -> list[list[Any]]:
        pipe = self.client.pipeline(transaction=False)
        sizes = []
        for build in builds:
            before = len(pipe.command_stack)
            build(pipe)
            sizes.append(len(pipe.command_stack) - before)
        flat = await pipe.execute(raise_on_error=False)
        out, i = [], 0
        for n in sizes:
            out.append(flat[i:i + n])
            i += n
        return out

    async def load_scripts(self) -> None:
        for script in self.scripts:
            await self.client.script_load(script.script)


def _noscript(value: Any) -> bool:
    return isinstance(value, redis.exceptions.NoScriptError) or (
        isinstance(value, redis.exceptions.ResponseError) and str(value).startswith("NOSCRIPT"))
