"""The load: N devices, each sending its events to the ingest one at a time, as EMQX's HTTP action does with
one request in flight per client: the next only after the previous got 200 (over aiohttp, a request per
connection at a time; or, `connections` > 0, pipelined with other clients' requests on a few connections, as
EMQX's connector sends them: pipelined.py); on 503, 429, a connection error or a timeout the same event again
(every `retry_every` s) until `retry_for` s have passed, then EMQX drops it.
Any other status is dropped at once (EMQX does not retry it).

A device connects, subscribes to its command topic (it becomes a device and comes online: presence version 2)
and then, at `rate` events/s, publishes heartbeats carrying {"seq": n} and now and then disconnects and
connects again. Every message and every status change is an `Item`: the route delivery of the message, the
callback delivery of the transition (its seq: the presence version). The bodies are EMQX 5's (the dev broker's
builders, adapter_devtools/devbroker/events.py)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import aiohttp
import orjson

from adapter_devtools.chaos.model import Answer, Item
from adapter_devtools.chaos.pipelined import PipelinedPool
from adapter_devtools.devbroker import events
from adapter_devtools.devbroker.ids import format_guid, node_bits
from adapter_devtools.devbroker.model import ConnInfo, Origin

RETRIED = frozenset({0, 429, 503})
FIRST_VERSION = 2  # connect (1: not yet a device, no callback), then the subscription makes it one (2)


@dataclass(frozen=True)
class LoadConfig:
    ingest_url: str  # …/emqx/events
    token: str
    devices: int
    rate: float  # events per second per device
    route: str  # "route:<id>"
    callback: str  # "callback:<id>"
    flip_every: int = 8  # every so many events a disconnect, and a connect next
    retry_for: float = 45.0  # EMQX's request_ttl
    retry_every: float = 0.5
    request_timeout: float = 15.0
    prefix: str = "CHAOS"
    seed: int = 1
    connections: int = 0  # > 0: EMQX's connector (pipelined.py), this many connections; 0: aiohttp, one each


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def stamp() -> events.Stamp:
    return events.Stamp(node="emqx@127.0.0.1", timestamp=now_ms())


class Device:
    """One device's events, in order; `connected_at` grows by at least 1 ms per connection."""

    def __init__(self, sn: str, n: int) -> None:
        self.sn = sn
        self.n = n
        self.conn = self._conn(now_ms())
        self.version = FIRST_VERSION - 1
        self.seq = 0
        self.online = True

    def _conn(self, at: int) -> ConnInfo:
        n = self.n
        return ConnInfo(clientid=self.sn, username=self.sn, peerhost=f"10.9.{n // 250}.{n % 250 + 1}",
                        peerport=40000 + n, sockhost="127.0.0.1", sockport=1883, keepalive=60, clean_start=True,
                        connected_at=at, expiry_interval=0)

    def connect(self) -> dict:
        self.conn = self._conn(max(now_ms(), self.conn.connected_at + 2))
        self.online = True
        self.version += 1
        return events.connected(self.conn, stamp())

    def disconnect(self) -> dict:
        self.online = False
        self.version += 1
        return events.disconnected(self.conn, "normal", max(now_ms(), self.conn.connected_at + 1), stamp())

    def subscribe(self) -> dict:
        self.version += 1
        return events.subscribed(self.conn, f"dma/cmd/{self.sn}", 1, stamp())

    def message(self) -> tuple[str, dict]:
        self.seq += 1
        received = now_ms()
        msg_id = format_guid(received * 1000, node_bits(self.sn), self.seq)
        payload = orjson.dumps({"sn": self.sn, "time": received // 1000, "bootTime": 0, "dur": 1, "seq": self.seq})
        origin = Origin(id=msg_id, clientid=self.sn, username=self.sn, peerhost=self.conn.peerhost,
                        peername=self.conn.peername, topic=f"dma/report/{self.sn}/heartbeat", payload=payload,
                        qos=1, retain=False, dup=False, received_at=received)
        return msg_id, events.publish(origin, stamp())


class Load:
    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.items: list[Item] = []
        self.answers: list[Answer] = []
        self.retired: list[str] = []  # devices that stopped: a status change of theirs was dropped
        self.stop_at = float("inf")  # monotonic: no event is produced from then on
        self.rng = random.Random(config.seed)
        self.session: aiohttp.ClientSession | None = None
        self.pool: PipelinedPool | None = None

    def stop(self) -> None:
        self.stop_at = time.monotonic()

    async def run(self) -> None:
        c = self.config
        headers = {"Authorization": f"Bearer {c.token}", "Content-Type": "application/json"}
        if c.connections:
            self.pool = PipelinedPool(c.ingest_url, headers, c.connections, c.request_timeout)
            try:
                await asyncio.gather(*(self._device(n) for n in range(c.devices)))
            finally:
                await self.pool.aclose()
            return
        connector = aiohttp.TCPConnector(limit=c.devices + 4)
        timeout = aiohttp.ClientTimeout(total=c.request_timeout)
        async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:
            self.session = session
            await asyncio.gather(*(self._device(n) for n in range(c.devices)))

    async def _status_of(self, key: str, raw: bytes) -> int:
        """One POST of an event: its answer's status, 0 for a connection error or a timeout."""
        if self.pool is not None:
            return await self.pool.post(key, raw)
        assert self.session is not None
        try:
            async with self.session.post(self.config.ingest_url, data=raw) as r:
                await r.read()
                return r.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def _post(self, body: dict) -> tuple[float, int]:
        """EMQX's HTTP action for one event: (when it was done with it, the last status; 0: gave up)."""
        raw = orjson.dumps(body)
        deadline = time.monotonic() + self.config.retry_for
        while True:
            sent = time.monotonic()
            status = await self._status_of(body["clientid"], raw)
            at = time.monotonic()
            self.answers.append(Answer(sent, at, status))
            if status not in RETRIED:
                return at, status
            if at + self.config.retry_every > deadline:
                return at, 0
            await asyncio.sleep(self.config.retry_every)

    async def _send(self, device: Device, body: dict, delivery_id: str, target: str, seq: int,
                    created: float) -> int:
        done, status = await self._post(body)
        self.items.append(Item(delivery_id, target, device.sn, seq, created, done, status))
        return status

    async def _status(self, device: Device, body: dict, created: float) -> bool:
        """A presence transition: False when it was not accepted (the device then stops: what version its
        later transitions would carry is not known)."""
        delivery_id = f"d:{device.sn}:{device.version}:{self.config.callback}"
        status = await self._send(device, body, delivery_id, self.config.callback, device.version, created)
        if status != 200:
            self.retired.append(device.sn)
        return status == 200

    async def _device(self, n: int) -> None:
        c = self.config
        device = Device(f"{c.prefix}{n:05d}", n)
        period = 1.0 / c.rate
        tick = time.monotonic() + self.rng.uniform(0, period)
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
        if (await self._post(events.connected(device.conn, stamp())))[1] != 200:
            self.retired.append(device.sn)
            return
        if not await self._status(device, device.subscribe(), tick):
            return
        k = 0
        while True:
            k += 1
            tick += period
            if tick >= self.stop_at:
                return
            await asyncio.sleep(max(0.0, tick - time.monotonic()))  # behind (a fault): at once, as EMQX would
            created = tick  # when EMQX would have had it, however late it goes out
            if k % c.flip_every == 0:
                if not await self._status(device, device.disconnect(), created):
                    return
            elif not device.online:
                if not await self._status(device, device.connect(), created):
                    return
            else:
                msg_id, body = device.message()
                await self._send(device, body, f"m:{msg_id}:{c.route}", c.route, device.seq, created)
