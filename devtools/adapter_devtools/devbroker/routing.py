"""Message routing on amqtt 0.12.1, corrected where it differs from EMQX, and the hooks that feed events.

Overrides of amqtt `Broker` internals (pinned version; behaviour pinned by the integration tests):
- `_handle_message_delivery`: stamps each client PUBLISH with an id and receive time (`Origin`).
- `_broadcast_message`: emits `message.publish` for client publishes and wills (not REST ones).
- `_run_broadcast`: delivers at min(publish QoS, subscription QoS) (amqtt used the subscription's
  QoS) and queues QoS 1/2 for offline persistent sessions (amqtt skipped "anonymous" ones).
- `_publish_session_retained_messages`: delivers the offline queue without the retain flag and
  without blocking the client's message loop (amqtt set retain=1 and waited for every PUBACK).
- `on_undelivered`: a QoS 1/2 message in flight when a persistent session's connection ends is kept
  and delivered again (amqtt lost it).
- `add_subscription` / `_handle_unsubscription`: emit `session.(un)subscribed`; a repeated
  SUBSCRIBE updates the QoS (amqtt kept the old one).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Iterator
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import ApplicationMessage, OutgoingApplicationMessage, Session

from adapter.protocol.topics import matches
from adapter_devtools.devbroker.channels import Channels, Conn
from adapter_devtools.devbroker.counters import Counters
from adapter_devtools.devbroker.emitter import Emitter, now_ms
from adapter_devtools.devbroker.handler import conn_of
from adapter_devtools.devbroker.ids import GuidGen
from adapter_devtools.devbroker.model import API_CLIENTID, ConnInfo, Origin, origin_of, tag

REFUSED = 0x80


class Route(enum.Enum):
    SEND = "send"
    QUEUE = "queue"
    DROP = "drop"


def route(connected: bool, clean_session: bool, qos: int) -> Route:
    """What a subscriber's session gets: sent now, queued while offline (persistent, QoS > 0), or nothing."""
    if connected:
        return Route.SEND
    return Route.QUEUE if not clean_session and qos > 0 else Route.DROP


def is_topic_name(topic: str | None) -> bool:
    """A name a client may publish to (amqtt also refuses names starting with `$`)."""
    if not topic:
        return False
    return "+" not in topic and "#" not in topic and not topic.startswith("$")


def is_topic_filter(topic_filter: str) -> bool:
    levels = topic_filter.split("/")
    return bool(topic_filter) and all(
        ("+" not in lvl or lvl == "+") and ("#" not in lvl or (lvl == "#" and i == len(levels) - 1))
        for i, lvl in enumerate(levels))


def client_origin(guid: str, conn: ConnInfo, message: ApplicationMessage, at: int) -> Origin:
    packet = message.publish_packet
    return Origin(id=guid, clientid=conn.clientid, username=conn.username, peerhost=conn.peerhost,
                  peername=conn.peername, topic=message.topic, payload=bytes(message.data),
                  qos=message.qos or 0, retain=bool(message.retain), dup=bool(packet and packet.dup_flag),
                  received_at=at)


class RoutingBroker(Broker):
    def __init__(self, config: dict[str, Any], *, emitter: Emitter, channels: Channels,
                 counters: Counters, guids: GuidGen) -> None:
        super().__init__(config)
        self.emitter = emitter
        self.channels = channels
        self.counters = counters
        self.guids = guids

    # -- publishes in ------------------------------------------------------------------------------

    async def _handle_message_delivery(self, client_session: Session, handler: BrokerProtocolHandler,
                                       wait_deliver: asyncio.Future[Any]) -> bool:
        message: ApplicationMessage | None = wait_deliver.result()
        conn = conn_of(handler)
        if message is not None and conn is not None and is_topic_name(message.topic):
            origin = client_origin(self.guids.next(), conn.info, message, now_ms())
            message.data = tag(message.data, origin)
            self._count_received(conn, origin.qos)
        ok = await super()._handle_message_delivery(client_session, handler, wait_deliver)
        if not ok and conn is not None and conn.reason is None:
            conn.reason = "topic_name_invalid"
        return ok

    def _count_received(self, conn: Conn, qos: int) -> None:
        conn.link.recv_msg[qos] += 1
        for name in ("messages.received", f"messages.qos{qos}.received", "packets.publish.received"):
            self.counters.metric(name)

    async def _broadcast_message(self, session: Session | None, topic: str | None,
                                 data: bytes | bytearray | None, force_qos: int | None = None) -> None:
        if session is not None and topic is not None and data is not None:
            origin = origin_of(data)
            if origin is None:
                origin = self._will_origin(session, topic, bytes(data), force_qos or 0)
                data = tag(data, origin)
            self.counters.metric("messages.publish")
            self.emitter.published(origin)
        await super()._broadcast_message(session, topic, data, force_qos)

    def _will_origin(self, session: Session, topic: str, payload: bytes, qos: int) -> Origin:
        conn = self.channels.latest.get(session.client_id or "")
        info = conn.info if conn is not None else None
        return Origin(id=self.guids.next(), clientid=session.client_id or "", username=session.username,
                      peerhost=info.peerhost if info else None, peername=info.peername if info else None,
                      topic=topic, payload=payload, qos=qos, retain=bool(session.will_retain), dup=False,
                      received_at=now_ms())

    async def publish_api(self, topic: str, payload: bytes, qos: int, retain: bool) -> tuple[str, int]:
        """Publish as EMQX's REST API does (`from: http_api`); returns the id and how many sessions
        got it (sent, or queued for an offline persistent session)."""
        origin = Origin(id=self.guids.next(), clientid=API_CLIENTID, username=None, peerhost=None,
                        peername=None, topic=topic, payload=payload, qos=qos, retain=retain, dup=False,
                        received_at=now_ms())
        data = tag(payload, origin)
        recipients = self.recipients(topic, qos)
        for name in ("messages.publish", "messages.received", f"messages.qos{qos}.received"):
            self.counters.metric(name)
        await super()._broadcast_message(None, topic, data, qos)
        if retain:
            await self.retain_message(None, topic, data, qos)
        return origin.id, recipients

    # -- fan-out -------------------------------------------------------------------------------------

    def _subscribers(self, topic: str) -> Iterator[tuple[Session, int]]:
        for topic_filter, subscriptions in list(self._subscriptions.items()):
            if matches(topic_filter, topic):
                yield from list(subscriptions)

    def _route_for(self, session: Session, qos: int) -> Route:
        return route(session.transitions.state == "connected", bool(session.clean_session), qos)

    def recipients(self, topic: str, qos: int) -> int:
        return sum(self._route_for(s, min(qos, sub_qos)) is not Route.DROP for s, sub_qos in self._subscribers(topic))

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[OutgoingApplicationMessage]]) -> None:
        broadcast = await self._broadcast_queue.get()
        topic, data = broadcast["topic"], broadcast["data"]
        origin = origin_of(data)
        pub_qos = origin.qos if origin is not None else (broadcast.get("qos") or 0)
        routed = 0
        for session, sub_qos in self._subscribers(topic):
            qos = min(pub_qos, sub_qos)
            action = self._route_for(session, qos)
            if action is Route.QUEUE:
                await self._retain_broadcast_message(broadcast, qos, session)
                self.counters.metric("messages.persisted")
            elif action is Route.SEND and (handler := self._get_handler(session)) is not None:
                running_tasks.append(asyncio.ensure_future(handler.mqtt_publish(topic, data, qos, retain=False)))
            routed += action is not Route.DROP
        if not routed:
            self.counters.metric("messages.dropped")
            self.counters.metric("messages.dropped.no_subscribers")

    async def _publish_session_retained_messages(self, session: Session) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        while not session.retained_messages.empty():
            queued = session.retained_messages.get_nowait()
            self._tasks_queue.append(asyncio.ensure_future(
                handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)))

    def on_undelivered(self, failed: BrokerProtocolHandler, session: Session, topic: str, data: bytes | bytearray,
                       qos: int) -> None:
        """A QoS 1/2 delivery that did not complete: a persistent session gets it again, at once if it
        has reconnected meanwhile, else on its next connection; a clean session loses it, as in EMQX."""
        if session.clean_session or self._sessions.get(session.client_id or "", (None,))[0] is not session:
            return
        handler = self._get_handler(session)
        if session.transitions.state == "connected" and handler is not None and handler is not failed:
            self._tasks_queue.append(asyncio.ensure_future(handler.mqtt_publish(topic, data, qos, retain=False)))
        else:
            session.retained_messages.put_nowait(RetainedApplicationMessage(None, topic, data, qos))

    def on_delivered(self, conn: Conn, data: bytes | bytearray, qos: int,
                     message: OutgoingApplicationMessage) -> None:
        conn.link.send_msg[qos] += 1
        for name in ("messages.sent", f"messages.qos{qos}.sent", "messages.delivered", "packets.publish.sent"):
            self.counters.metric(name)
        origin = origin_of(data)
        if qos == 0 or origin is None:
            return
        self.counters.metric("messages.acked")
        dup = bool(message.publish_packet and message.publish_packet.dup_flag)
        self.emitter.acked(origin, conn.info, qos, {"dup": dup, "retain": bool(message.retain)})

    # -- subscriptions -------------------------------------------------------------------------------

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        topic_filter, qos = subscription
        if not is_topic_filter(topic_filter):
            return REFUSED
        entries = self._subscriptions.setdefault(topic_filter, [])
        entries[:] = [(s, q) for s, q in entries if s.client_id != session.client_id]
        entries.append((session, qos))
        conn = self.channels.live.get(session.client_id or "")
        if conn is not None and conn.session is session:
            self.counters.metric("client.subscribe")
            self.emitter.subscribed(conn.info, topic_filter, qos)
        return qos

    def subscription_qos(self, topic_filter: str, session: Session) -> int | None:
        for s, qos in self._subscriptions.get(topic_filter, []):
            if s.client_id == session.client_id:
                return qos
        return None

    async def _handle_unsubscription(self, client_session: Session, handler: BrokerProtocolHandler,
                                     unsubscribe_waiter: asyncio.Future[Any]) -> None:
        unsubscription = unsubscribe_waiter.result()
        conn = conn_of(handler)
        for topic_filter in unsubscription.topics:
            qos = self.subscription_qos(topic_filter, client_session)
            if qos is None or not self._del_subscription(topic_filter, client_session):
                continue
            if not self._subscriptions.get(topic_filter):
                self._subscriptions.pop(topic_filter, None)
            if conn is not None:
                self.counters.metric("client.unsubscribe")
                self.emitter.unsubscribed(conn.info, topic_filter, qos)
        await handler.mqtt_acknowledge_unsubscription(unsubscription.packet_id)

    def subscription_count(self, session: Session) -> int:
        return sum(1 for subs in self._subscriptions.values() for s, _ in subs if s is session)
