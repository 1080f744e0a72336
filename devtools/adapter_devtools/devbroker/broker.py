"""The MQTT connection life cycle, as EMQX runs it, on amqtt 0.12.1 (pinned).

`DevBroker.stream_connected` replaces amqtt's per-connection path (`_client_connected`,
`_initialize_client_session`, `_handle_client_session`) and keeps its protocol handler, session,
message loop and routing. What it adds, because amqtt lacks it:
- authentication before anything else; a refused client gets CONNACK 4 (5 when HTTP authentication
  refused it) and leaves no session behind (amqtt registered refused sessions as connected);
- with `auth_url`, authorization of each PUBLISH (amqtt's topic check) and SUBSCRIBE (here) through
  `http_auth.HttpAuthPlugin`, with the message's qos and retain in `http_auth.AUTHZ_DETAIL`;
- an older connection with the same client id is kicked first and its `client.disconnected` posted
  before the new `client.connected`: reason `discarded` (new clean session) or `takenover` (new
  persistent session) (amqtt kept both, or dropped both);
- keepalive: no byte received for 1.5 × keepalive closes the connection, reason `keepalive_timeout`;
- a CONNECT must arrive within 15 s (EMQX `idle_timeout`);
- disconnect reasons: `normal` (DISCONNECT), `tcp_closed`, `keepalive_timeout`, `kicked` (REST),
  `discarded`, `takenover`, `topic_name_invalid` (PUBLISH to a wildcard or `$` topic; amqtt closes
  the connection, EMQX would only refuse `$`-topics by authorization), `shutdown` (broker stopping);
- a clean session's state is dropped when its connection ends (amqtt waited up to 1 s).
Differences that remain: MQTT 3.1.1 only (amqtt refuses MQTT 5 with CONNACK 0x84 and drops 3.1);
no authorization unless `auth_url` is set; QoS 0 messages are not queued for offline sessions (EMQX
queues them by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any, cast

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.contexts import Action
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, ConnackPacket
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

from adapter_devtools.devbroker.channels import CREATED_AT, Channel, Conn
from adapter_devtools.devbroker.emitter import now_ms
from adapter_devtools.devbroker.handler import DevHandler, conn_of
from adapter_devtools.devbroker.http_auth import REFUSAL_CODE, authz_detail
from adapter_devtools.devbroker.link import Link, MeteredReader, MeteredWriter
from adapter_devtools.devbroker.model import ConnInfo
from adapter_devtools.devbroker.routing import REFUSED, RoutingBroker, is_topic_filter

log = logging.getLogger(__name__)

KEEPALIVE_FACTOR = 1.5
CONNECT_TIMEOUT = 15.0
KICK_TIMEOUT = 5.0


class DevBroker(RoutingBroker):
    def __init__(self, config: dict[str, Any], *, session_expiry: int, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.session_expiry = session_expiry
        self.started_at = time.monotonic()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- one connection ------------------------------------------------------------------------------

    async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               listener_name: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        server = self._servers[listener_name]
        await server.acquire_connection()
        link = Link(writer, self.counters)
        try:
            await self._serve(MeteredReader(reader, link), MeteredWriter(writer, link), link)
        except Exception as exc:
            log.debug("devbroker: connection from %s:%s ended: %r", link.peerhost, link.peerport, exc)
        finally:
            link.close()
            server.release_connection()
            if task is not None:
                self._conn_tasks.discard(task)

    async def _serve(self, reader: ReaderAdapter, writer: WriterAdapter, link: Link) -> None:
        parsed = await self._read_connect(reader, writer)
        if parsed is None:
            return
        handler, incoming = parsed
        self.counters.metric("client.connect")
        self.counters.metric("packets.connect.received")
        self.counters.metric("client.authenticate")
        if not await self._authenticate(incoming, self.listeners_config["default"]):
            await self._refuse(writer, incoming.attributes.get(REFUSAL_CODE, BAD_USERNAME_PASSWORD))
            return
        clientid = incoming.client_id or ""
        async with self._lock_for(clientid):
            await self._evict(clientid, bool(incoming.clean_session))
            session = await self._take_session(incoming)
            conn = self._register(handler, session, reader, writer, link)
            try:
                await self._start(conn)
            except BaseException:
                await self._close(conn)
                raise
        try:
            await self._client_message_loop(conn.session, conn.handler)
        finally:
            await self._close(conn)

    async def _read_connect(self, reader: ReaderAdapter,
                            writer: WriterAdapter) -> tuple[DevHandler, Session] | None:
        try:
            handler, session = await asyncio.wait_for(
                DevHandler.init_from_connect(reader, writer, self.plugins_manager), CONNECT_TIMEOUT)
        except Exception as exc:
            log.debug("devbroker: no valid CONNECT: %r", exc)
            await writer.close()
            return None
        dev_handler = cast(DevHandler, handler)
        dev_handler.on_delivered = self.on_delivered
        dev_handler.on_undelivered = self.on_undelivered
        return dev_handler, session

    async def _refuse(self, writer: WriterAdapter, code: int) -> None:
        for name in ("authentication.failure", "packets.connack.sent", "packets.connack.auth_error",
                     "packets.connack.error"):
            self.counters.metric(name)
        self.counters.count("connects.refused")
        await ConnackPacket.build(0, code).to_stream(writer)
        await writer.close()

    def _lock_for(self, clientid: str) -> asyncio.Lock:
        lock = self._locks.get(clientid)
        if lock is None:
            lock = self._locks[clientid] = asyncio.Lock()
        return lock

    async def _evict(self, clientid: str, clean_start: bool) -> None:
        conn = self.channels.live.get(clientid)
        if conn is None:
            return
        reason = "discarded" if clean_start else "takenover"
        self.counters.metric(f"session.{reason}")
        await self.kick(conn, reason)

    async def _take_session(self, incoming: Session) -> Session:
        """The session this connection continues: a new one, or the persistent one it resumes."""
        clientid = incoming.client_id or ""
        existing = self._sessions.get(clientid)
        if incoming.clean_session or existing is None:
            if existing is not None:
                await self._delete_session(clientid)
            incoming.parent = 0
            incoming.attributes[CREATED_AT] = now_ms()
            self.counters.metric("session.created")
            return incoming
        session = existing[0]
        for name in ("will_flag", "will_message", "will_topic", "will_qos", "will_retain", "keep_alive",
                     "username", "password", "remote_address", "remote_port", "clean_session"):
            setattr(session, name, getattr(incoming, name))
        session.parent = 1
        self.counters.metric("session.resumed")
        return session

    def _register(self, handler: DevHandler, session: Session, reader: ReaderAdapter,
                  writer: WriterAdapter, link: Link) -> Conn:
        clientid = session.client_id or ""
        if session.transitions.is_connected():
            session.transitions.disconnect()
        session.transitions.connect()
        handler.attach(session, reader, writer)
        self._sessions[clientid] = (session, handler)
        clean = bool(session.clean_session)
        info = ConnInfo(clientid=clientid, username=session.username, peerhost=link.peerhost,
                        peerport=link.peerport, sockhost=link.sockhost, sockport=link.sockport,
                        keepalive=session.keep_alive, clean_start=clean, connected_at=now_ms(),
                        expiry_interval=0 if clean else self.session_expiry)
        conn = Conn(info, session, handler, link, created_at=session.attributes.get(CREATED_AT, info.connected_at))
        handler.conn = conn
        self.channels.opened(conn)
        return conn

    async def _start(self, conn: Conn) -> None:
        await conn.handler.mqtt_connack_authorize(True)
        for name in ("packets.connack.sent", "client.connack", "client.connected", "authentication.success"):
            self.counters.metric(name)
        self.counters.count("connects")
        self.emitter.connected(conn.info)
        await conn.handler.start()
        reader_task = conn.handler._reader_task
        if conn.reason is not None or (reader_task is not None and reader_task.done()):
            # closed before amqtt's disconnect waiter existed: wake the message loop now
            await conn.handler.handle_connection_closed()
        if conn.info.keepalive > 0:
            conn.watchdog = asyncio.create_task(self._watch_keepalive(conn))
        await self._publish_session_retained_messages(conn.session)

    async def _watch_keepalive(self, conn: Conn) -> None:
        limit = conn.info.keepalive * KEEPALIVE_FACTOR
        while True:
            idle = time.monotonic() - conn.link.last_rx
            if idle >= limit:
                await self.request_close(conn, "keepalive_timeout")
                return
            await asyncio.sleep(limit - idle + 0.005)

    async def _handle_disconnect(self, client_session: Session, handler: BrokerProtocolHandler,
                                 disconnect_waiter: asyncio.Future[Any]) -> None:
        conn = conn_of(handler)
        if conn is not None and conn.reason is None and isinstance(disconnect_waiter.result(), DisconnectPacket):
            conn.reason = "normal"
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)

    async def _close(self, conn: Conn) -> None:
        """End a connection exactly once: stop it, post `client.disconnected`, release waiters."""
        if conn.ended.is_set():
            return
        if conn.watchdog is not None:
            conn.watchdog.cancel()
        session = conn.session
        if session.transitions.is_connected():
            await self._stop_handler(conn.handler)
            session.transitions.disconnect()
        conn.reason = conn.reason or ("shutdown" if self._stopping else "tcp_closed")
        conn.disconnected_at = now_ms()
        self.channels.closed(conn)
        if conn.info.clean_start and self._sessions.get(conn.clientid, (None, None))[0] is session:
            await self._delete_session(conn.clientid)
            self.counters.metric("session.terminated")
        self.counters.metric("client.disconnected")
        self.emitter.disconnected(conn.info, conn.reason, conn.disconnected_at)
        conn.ended.set()

    # -- authorization -------------------------------------------------------------------------------

    async def _handle_message_delivery(self, client_session: Session, handler: BrokerProtocolHandler,
                                       wait_deliver: asyncio.Future[Any]) -> bool:
        message = wait_deliver.result()
        with authz_detail((message and message.qos) or 0, bool(message and message.retain)):
            return await super()._handle_message_delivery(client_session, handler, wait_deliver)

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        """A SUBSCRIBE's filter, authorized first (amqtt's check is bypassed by RoutingBroker)."""
        topic_filter, qos = subscription
        if is_topic_filter(topic_filter):
            with authz_detail(qos, False):
                allowed = await self._topic_filtering(session, topic_filter, Action.SUBSCRIBE)
            if not allowed:
                return REFUSED
        return await super().add_subscription(subscription, session)

    # -- control -------------------------------------------------------------------------------------

    async def request_close(self, conn: Conn, reason: str) -> None:
        """Close a connection for `reason` (the first reason given wins); does not wait."""
        if conn.ended.is_set():
            return
        conn.reason = conn.reason or reason
        await conn.handler.handle_connection_closed()
        conn.link.close()

    async def kick(self, conn: Conn, reason: str) -> None:
        """Close a connection and wait until its `client.disconnected` is out."""
        await self.request_close(conn, reason)
        try:
            await asyncio.wait_for(conn.ended.wait(), KICK_TIMEOUT)
        except TimeoutError:
            log.warning("devbroker: %s did not end within %s s; aborting its socket", conn.clientid, KICK_TIMEOUT)
            conn.link.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.ended.wait(), 1.0)

    def channel_list(self) -> list[Channel]:
        return self.channels.listing(self._sessions)

    async def kick_client(self, clientid: str) -> bool:
        """REST `DELETE /clients/{id}`: kick the connection (reason `kicked`) and end its session."""
        known = any(row.conn.clientid == clientid for row in self.channel_list())
        if not known:
            return False
        self.counters.count("kicks")
        conn = self.channels.live.get(clientid)
        if conn is not None:
            await self.kick(conn, "kicked")
        entry = self._sessions.get(clientid)
        if entry is not None and not entry[0].transitions.is_connected():
            await self._delete_session(clientid)
            self.counters.metric("session.terminated")
        return True

    def uptime_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)

    async def shutdown(self) -> None:
        self._stopping = True
        await super().shutdown()

    async def drain_connections(self, timeout: float) -> None:
        """After `shutdown`: let connection tasks post their disconnects, then cancel stragglers."""
        deadline = time.monotonic() + timeout
        while (self.channels.live or self._conn_tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in list(self._conn_tasks):
            task.cancel()
        if self._conn_tasks:
            await asyncio.wait(list(self._conn_tasks), timeout=1.0)
