"""One device's MQTT 3.1.1 connection (paho-mqtt 2.x) driven by an asyncio loop, with reconnects.

paho's external-loop API: paho asks for read/write interest through its socket callbacks, mapped
here to `loop.add_reader` / `loop.add_writer`, so thousands of clients share one thread and no paho
call ever happens off the loop's thread. `misc()` must be called about once a second (keepalive).
After a lost connection the link reconnects after `reconnect_delay`, doubling on failures up to 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from adapter_devtools.simulator.reports import cmd_topic

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class LinkSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    keepalive: int = 60
    username: str | None = None
    password: str | None = None
    clean_session: bool = True
    reconnect_delay: float = 1.0
    connect_timeout: float = 5.0


class LinkEvents(Protocol):
    def on_ready(self) -> None: ...

    def on_down(self) -> None: ...

    def on_command(self, payload: bytes) -> None: ...


class Link:
    def __init__(self, sn: str, settings: LinkSettings, events: LinkEvents,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.sn = sn
        self.settings = settings
        self.events = events
        self.loop = loop
        self.client = self._new_client()
        self.wanted = False
        self.connects = 0
        self.drops = 0
        self.closed = asyncio.Event()
        self._failures = 0
        self._retry: asyncio.TimerHandle | None = None
        self._sub_mid: int | None = None

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.sn, clean_session=s.clean_session,
                             protocol=mqtt.MQTTv311)
        client.username_pw_set(s.username or self.sn, s.password)
        client.connect_timeout = s.connect_timeout
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.connect_async(s.host, s.port, s.keepalive)
        return client

    # -- control (loop thread only) --

    def start(self) -> None:
        self.wanted = True
        self.closed.clear()
        self._connect()

    def stop(self) -> None:
        """Disconnect cleanly (DISCONNECT packet); `closed` is set once the socket is gone."""
        self.wanted = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.client.socket() is None:
            self.closed.set()
        else:
            self.client.disconnect()

    def drop(self) -> bool:
        """Lose the connection without a DISCONNECT packet, as a device losing its network would."""
        sock = self.client.socket()
        if sock is None:
            return False
        self.drops += 1
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_read()  # paho reads EOF now: connection lost, on_disconnect, reconnect timer
        return True

    def misc(self) -> None:
        if self.client.socket() is not None:
            self.client.loop_misc()

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.client.publish(topic, payload, qos=qos)

    def _connect(self) -> None:
        self._retry = None
        if not self.wanted:
            return
        try:
            self.client.reconnect()
        except OSError as exc:
            s = self.settings
            log.warning("%s: connect to %s:%s failed: %s", self.sn, s.host, s.port, exc)
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._retry is not None:
            return
        delay = min(MAX_BACKOFF, self.settings.reconnect_delay * 2**self._failures)
        self._failures += 1
        self._retry = self.loop.call_later(delay, self._connect)

    # -- paho callbacks (called from inside loop_read / loop_write / loop_misc) --

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("%s: connection refused: %s", self.sn, reason)
            return
        self._failures = 0
        self.connects += 1
        _, self._sub_mid = client.subscribe(cmd_topic(self.sn), qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Any) -> None:
        if mid != self._sub_mid:
            return
        if any(r.is_failure for r in reasons):
            log.warning("%s: subscription to %s refused", self.sn, cmd_topic(self.sn))
            return
        self.events.on_ready()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        self.events.on_down()
        if self.wanted:
            log.info("%s: connection lost (%s), reconnecting", self.sn, reason)
            self._schedule_reconnect()
        else:
            self.closed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == cmd_topic(self.sn):
            self.events.on_command(bytes(msg.payload))

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.loop.remove_reader(sock)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.loop.remove_writer(sock)
