"""amqtt's broker-side protocol handler, told how each delivery to its client ended.

`mqtt_publish` returns once the subscriber has acknowledged a QoS 1/2 message (or at once for QoS 0);
the broker turns that into delivery counters and EMQX's `message.acked`. A QoS 1/2 delivery that
never completes (connection lost, PUBACK timeout) is handed back to the broker, which keeps it for a
persistent session instead of losing it (amqtt dropped in-flight messages at disconnect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import OutgoingApplicationMessage, Session

if TYPE_CHECKING:
    from adapter_devtools.devbroker.channels import Conn

Delivered = Callable[["Conn", bytes | bytearray, int, OutgoingApplicationMessage], None]
Undelivered = Callable[["DevHandler", Session, str, bytes | bytearray, int], None]


class DevHandler(BrokerProtocolHandler):
    conn: Conn | None = None
    on_delivered: Delivered | None = None
    on_undelivered: Undelivered | None = None

    async def mqtt_publish(self, topic: str, data: bytes | bytearray, qos: int | None, retain: bool,
                           ack_timeout: int | None = None) -> OutgoingApplicationMessage:
        conn, session = self.conn, self.session
        try:
            message = await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        except (asyncio.CancelledError, Exception):
            if qos and session is not None and self.on_undelivered is not None:
                self.on_undelivered(self, session, topic, data, qos)
            raise
        if conn is not None and self.on_delivered is not None:
            self.on_delivered(conn, data, qos or 0, message)
        return message


def conn_of(handler: object) -> Conn | None:
    return handler.conn if isinstance(handler, DevHandler) else None
