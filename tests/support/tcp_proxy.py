"""A TCP proxy on loopback, in a thread, that can cut a connection at the worst moment: after the server has
answered a request, before the client reads the answer (the reply is lost, its effect is not)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.support.servers import free_port


class Proxy:
    def __init__(self, upstream_port: int, cut: Callable[[bytes], bool]) -> None:
        self.upstream_port = upstream_port
        self.cut = cut  # called on each chunk the server sends: True drops it and closes the connection
        self.port = free_port()
        self.cuts = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            for writer in list(self.writers):
                writer.close()
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self.writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, check: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if check and self.cut(chunk):
                        self.cuts += 1
                        break
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (writer, up_writer):
                    w.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextmanager
def tcp_proxy(upstream_port: int, cut: Callable[[bytes], bool]) -> Iterator[Proxy]:
    proxy = Proxy(upstream_port, cut)
    proxy.thread.start()
    proxy.ready.wait(10)
    try:
        yield proxy
    finally:
        proxy.stop()
