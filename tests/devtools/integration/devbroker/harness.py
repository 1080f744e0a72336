"""Test harness for the dev broker: the real broker on its own loop in a thread (free ports), a real
loopback HTTP receiver recording the events it posts, and real MQTT clients (paho, raw sockets)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from adapter_devtools.devbroker import DevBrokerConfig, DevBrokerRuntime
from tests.support.servers import wait_for

API_KEY, API_SECRET, INGEST_TOKEN = "test-key", "test-secret", "test-ingest-token"
SHARED = Path(__file__).resolve().parents[4] / ".." / "shared" / "emqx"

Body = dict[str, Any]


# -- the ingest receiver -----------------------------------------------------------------------------


@dataclass
class Posted:
    headers: dict[str, str]
    body: Body


@dataclass
class Receiver:
    """Records every POST; answers with scripted statuses (then 200)."""

    url: str = ""
    posted: list[Posted] = field(default_factory=list)
    attempts: int = 0
    script: deque[int] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: Body) -> int:
        with self.lock:
            self.attempts += 1
            status = self.script.popleft() if self.script else 200
            if 200 <= status < 300:
                self.posted.append(Posted(headers, body))
            return status

    def events(self, event: str | None = None, clientid: str | None = None) -> list[Body]:
        with self.lock:
            bodies = [p.body for p in self.posted]
        return [b for b in bodies if (event is None or b["event"] == event)
                and (clientid is None or b.get("clientid") == clientid)]

    def wait(self, event: str, clientid: str | None = None, count: int = 1, timeout: float = 5.0) -> list[Body]:
        return wait_for(lambda: (found := self.events(event, clientid)) and len(found) >= count and found,
                        timeout, f"{count} × {event} for {clientid}")


def handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.answer({k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A Receiver listening on a free loopback port, in a thread."""
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(rec))
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_port}/emqx/events"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- the broker ----------------------------------------------------------------------------------------


class RunningBroker:
    """A DevBrokerRuntime on its own loop in a thread."""

    def __init__(self, config: DevBrokerConfig) -> None:
        self.config = config
        self.runtime = DevBrokerRuntime(config)
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        await self.runtime.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.runtime.stop()

    def start(self) -> RunningBroker:
        self._thread.start()
        assert self._ready.wait(10), "dev broker did not start"
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "dev broker did not stop"

    @property
    def mqtt_port(self) -> int:
        return self.runtime.mqtt_port

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.runtime.api_port}"

    def api(self, auth: tuple[str, str] | None = (API_KEY, API_SECRET)) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, auth=auth, timeout=10)

    @classmethod
    def for_receiver(cls, receiver: Receiver, **overrides: Any) -> RunningBroker:
        settings: Body = {"mqtt_port": 0, "api_port": 0, "ingest_url": receiver.url, "ingest_token": INGEST_TOKEN,
                          "api_key": API_KEY, "api_secret": API_SECRET, "retry_ttl": 5.0, "shutdown_grace": 0.5,
                          **overrides}
        return cls(DevBrokerConfig(**settings)).start()

    def dev_stats(self) -> Body:
        with self.api() as api:
            stats: Body = api.get("/devbroker/stats").json()
            return stats


# -- MQTT clients ------------------------------------------------------------------------------------


class Device:
    """A paho client (MQTT 3.1.1) on a background loop, recording the messages it gets."""

    def __init__(self, port: int, clientid: str, *, clean_session: bool = True, keepalive: int = 60,
                 username: str | None = None, password: str | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=clientid, clean_session=clean_session,
                                  protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: list[mqtt.MQTTMessage] = []
        self.connack: list[Any] = []
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connack.append(rc)
        self.client.connect("127.0.0.1", port, keepalive)
        self.client.loop_start()
        wait_for(lambda: self.connack, what=f"CONNACK for {clientid}")

    @property
    def accepted(self) -> bool:
        return bool(self.connack) and not self.connack[0].is_failure

    def subscribe(self, topic: str, qos: int = 1) -> None:
        acked = threading.Event()
        self.client.on_subscribe = lambda *_a: acked.set()
        self.client.subscribe(topic, qos)
        assert acked.wait(5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes | str, qos: int = 0) -> None:
        self.client.publish(topic, payload, qos).wait_for_publish(5)

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()


def _utf8(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(clientid: str, *, keepalive: int = 60, clean: bool = True) -> bytes:
    variable = _utf8("MQTT") + bytes([4, 0x02 if clean else 0x00]) + struct.pack("!H", keepalive)
    body = variable + _utf8(clientid)
    return bytes([0x10, len(body)]) + body


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = struct.pack("!H", packet_id) + _utf8(topic_filter) + bytes([qos])
    return bytes([0x82, len(body)]) + body


@contextmanager
def raw_client(port: int, clientid: str, *, keepalive: int = 60, clean: bool = True) -> Iterator[socket.socket]:
    """A bare TCP MQTT client that connects and then does nothing unless told to."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(connect_packet(clientid, keepalive=keepalive, clean=clean))
        connack = sock.recv(4)
        assert connack[:1] == b"\x20" and connack[3:4] == b"\x00", connack
        yield sock
    finally:
        sock.close()


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(1024):
            pass
    except ConnectionResetError:
        pass
    return True
