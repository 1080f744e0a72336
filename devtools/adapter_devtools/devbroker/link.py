"""The TCP connection under an MQTT session: its addresses, byte meters and last activity.

`MeteredReader` / `MeteredWriter` are amqtt's stream adapters with metering; the time of the last
byte received drives the keepalive check (EMQX counts any received bytes as activity).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter

from adapter_devtools.devbroker.counters import Counters


def _host_port(info: Any) -> tuple[str, int]:
    if isinstance(info, (tuple, list)) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return "undefined", 0


class Link:
    def __init__(self, writer: asyncio.StreamWriter, counters: Counters,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.peerhost, self.peerport = _host_port(writer.get_extra_info("peername"))
        self.sockhost, self.sockport = _host_port(writer.get_extra_info("sockname"))
        self._transport = writer.transport
        self._counters = counters
        self._clock = clock
        self.last_rx = clock()
        self.recv_oct = 0
        self.send_oct = 0
        self.recv_msg = [0, 0, 0]
        self.send_msg = [0, 0, 0]

    def received(self, n: int) -> None:
        if n:
            self.last_rx = self._clock()
            self.recv_oct += n
            self._counters.metric("bytes.received", n)

    def sent(self, n: int) -> None:
        self.send_oct += n
        self._counters.metric("bytes.sent", n)

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        self._transport.abort()


class MeteredReader(StreamReaderAdapter):
    def __init__(self, reader: asyncio.StreamReader, link: Link) -> None:
        super().__init__(reader)
        self.link = link

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        self.link.received(len(data))
        return data


class MeteredWriter(StreamWriterAdapter):
    def __init__(self, writer: asyncio.StreamWriter, link: Link) -> None:
        super().__init__(writer)
        self.link = link

    def write(self, data: bytes) -> None:
        if not self.is_closed:
            self.link.sent(len(data))
        super().write(data)
