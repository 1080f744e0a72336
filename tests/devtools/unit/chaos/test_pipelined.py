"""The chaos load's pipelined transport (chaos/pipelined.py) against a server on loopback: requests of many clients
on one connection, in flight together, each given its own answer; a connection that breaks fails what was in
flight on it (status 0) and the next request opens another."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson

from adapter_devtools.chaos.pipelined import PipelinedPool


class Server:
    """Answers each request with the status its body names (`{"code": 503}`), once `batch` requests have come in on
    the connection (so they are in flight together), in order; `{"code": 0}` closes the connection unanswered."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.connections = 0
        self.most_in_flight = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        codes: list[int] = []
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(v) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                              if k.lower() == b"content-length")
                codes.append(orjson.loads(await reader.readexactly(length))["code"])
                if len(codes) < self.batch:
                    continue
                self.most_in_flight = max(self.most_in_flight, len(codes))
                if 0 in codes:
                    break
                writer.write(b"".join(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\nok" % c for c in codes))
                codes = []
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
        await writer.wait_closed()


@asynccontextmanager
async def serving(batch: int) -> AsyncIterator[tuple[Server, str]]:
    server = Server(batch)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/emqx/events"
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()
        await listener.wait_closed()


async def test_requests_of_many_clients_go_pipelined_on_one_connection_each_with_its_answer() -> None:
    async with serving(batch=3) as (server, url):
        pool = PipelinedPool(url, {"Authorization": "Bearer t"}, 1, timeout=5)
        statuses = await asyncio.gather(*(pool.post(f"D{i}", orjson.dumps({"code": code}))
                                          for i, code in enumerate((200, 503, 429))))
        await pool.aclose()
    assert statuses == [200, 503, 429]
    assert server.connections == 1 and server.most_in_flight == 3


async def test_a_broken_connection_fails_what_was_in_flight_and_the_next_request_opens_another() -> None:
    async with serving(batch=2) as (server, url):
        pool = PipelinedPool(url, {}, 1, timeout=5)
        lost = await asyncio.gather(pool.post("D1", orjson.dumps({"code": 0})),
                                    pool.post("D2", orjson.dumps({"code": 200})))
        server.batch = 1
        again = await pool.post("D2", orjson.dumps({"code": 200}))
        await pool.aclose()
    assert lost == [0, 0] and again == 200 and server.connections == 2
