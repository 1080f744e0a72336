"""EMQX's HTTP connector as this project configures it (adapter/broker/emqx_config.py): a pool of `size`
connections to the ingest, a client's requests always on the same one (`pool_type = hash`), the requests of many
clients pipelined on each (`enable_pipelining`) and answered in order. The chaos load's other transport (the
default is aiohttp, one request per connection at a time): with it the faults fall on trains of pipelined
requests, which the API answers together (adapter/api/protocol.py).

A broken connection fails every request in flight on it (status 0: the load sends them again, as EMQX's buffer
workers do), and so does a request that timed out (its answer, should it come, would be taken for a later
request's); the next request opens a new connection."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import deque

import yarl

from adapter_devtools.httpwire import build_request, read_answer


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.waiting: deque[asyncio.Future[int]] = deque()  # its requests in flight, in the order sent
        self.reading = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                                 ValueError):
            while True:
                status = await read_answer(self.reader)
                waiter = self.waiting.popleft()
                if not waiter.done():
                    waiter.set_result(status)
        self.close()

    @property
    def broken(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(0)


class PipelinedPool:
    def __init__(self, url: str, headers: dict[str, str], size: int, timeout: float) -> None:
        u = yarl.URL(url)
        self.host, self.port, self.path = u.host or "127.0.0.1", u.port or 80, u.path
        self.headers = headers
        self.timeout = timeout
        self.slots: list[_Connection | None] = [None] * size
        self.opening = [asyncio.Lock() for _ in range(size)]
        self.most_in_flight = 0  # requests in flight together on one connection, at most (the trains' length)

    async def post(self, key: str, body: bytes) -> int:
        """POST `body` on `key`'s connection: the answer's status, 0 when the connection failed or timed out."""
        i = zlib.crc32(key.encode()) % len(self.slots)
        conn = await self._connection(i)
        if conn is None:
            return 0
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        conn.waiting.append(waiter)
        self.most_in_flight = max(self.most_in_flight, len(conn.waiting))
        conn.writer.write(build_request(self.host, self.path, body, self.headers))
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), self.timeout)
        except TimeoutError:
            conn.close()
            return 0

    async def _connection(self, i: int) -> _Connection | None:
        async with self.opening[i]:
            conn = self.slots[i]
            if conn is None or conn.broken:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                            self.timeout)
                except (OSError, TimeoutError):
                    return None
                conn = self.slots[i] = _Connection(reader, writer)
            return conn

    async def aclose(self) -> None:
        for conn in self.slots:
            if conn is not None:
                conn.close()
                conn.reading.cancel()
                await asyncio.gather(conn.reading, return_exceptions=True)
                with contextlib.suppress(OSError):
                    await conn.writer.wait_closed()
