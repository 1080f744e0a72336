"""The ingest (DESIGN §4): what each EMQX event changes, queued as atomic scripts on a shared pipeline.

`plan` is pure: it turns an event into a label for the counters, an optional rejection reason, and the
commands to queue. `Ingest.apply` runs them through the batcher and answers once they are written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapter import device_store as ds
from adapter import uplink
from adapter.batcher import Batcher
from adapter.events import (
    Connected,
    Disconnected,
    Event,
    MessageAcked,
    MessagePublished,
    Subscribed,
    Unknown,
    Unsubscribed,
)
from adapter.keys import Keys

REST_API_CLIENT = "http_api"
Build = Callable[[Any], None]


@dataclass(frozen=True)
class Plan:
    label: str
    rejected: str | None = None
    queue: Build | None = None


def _label(ev: Event) -> str:
    match ev:
        case Unknown():
            return "unknown"
        case Connected():
            return "client.connected"
        case Disconnected():
            return "client.disconnected"
        case Subscribed():
            return "session.subscribed"
        case Unsubscribed():
            return "session.unsubscribed"
        case MessagePublished():
            return "message.publish"
        case MessageAcked():
            return "message.acked"
    return "unknown"


def plan(ev: Event, keys: Keys, now_ms: int) -> Plan:
    label = _label(ev)
    match ev:
        case Connected() | Disconnected():
            return Plan(label, queue=lambda p: ds.queue_presence(p, keys, ev))
        case Subscribed() if uplink.is_own_command_topic(ev.clientid, ev.topic):
            return Plan(label, queue=lambda p: ds.queue_mark(p, keys, ev.clientid, now_ms))
        case MessagePublished() if ev.clientid != REST_API_CLIENT:
            return _message_plan(ev, keys, label)
    return Plan(label)


def _message_plan(msg: MessagePublished, keys: Keys, label: str) -> Plan:
    kind = uplink.report_kind(msg)
    sn, at = msg.clientid, msg.received_at
    if kind is None:
        return Plan(label, queue=lambda p: ds.queue_active(p, keys, sn, at))
    report = uplink.parse_report(msg, kind)
    if isinstance(report, uplink.Rejected):
        return Plan(label, rejected=report.reason)
    if kind in ("procs", "sys", "versions"):
        stored = uplink.stored_report(report)
        return Plan(label, queue=lambda p: ds.queue_report(p, keys, sn, at, kind, stored))
    if kind == "heartbeat":
        boot, dur = uplink.heartbeat_fields(report)
        return Plan(label, queue=lambda p: ds.queue_heartbeat(p, keys, sn, at, boot, dur))
    if kind == "peripherals":
        items = uplink.peripherals_of(report)
        if isinstance(items, uplink.Rejected):
            return Plan(label, rejected=items.reason)
        return Plan(label, queue=lambda p: ds.queue_peripherals(p, keys, sn, at, items))
    return Plan(label, queue=lambda p: ds.queue_mark(p, keys, sn, at))


class Ingest:
    def __init__(self, batcher: Batcher, keys: Keys) -> None:
        self.batcher = batcher
        self.keys = keys

    async def apply(self, ev: Event) -> Plan:
        """Write the event's effects and its counters; return once Redis has them."""
        p = plan(ev, self.keys, int(time.time() * 1000))
        metrics = self.keys.metrics()

        def build(pipe: Any) -> None:
            pipe.hincrby(metrics, f'ingest_events_total{{type="{p.label}"}}', 1)
            if p.rejected:
                pipe.hincrby(metrics, f'ingest_rejected_total{{reason="{p.rejected}"}}', 1)
            elif p.queue is not None:
                p.queue(pipe)

        results = await self.batcher.submit(build)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return p

    async def count_malformed(self) -> None:
        metrics = self.keys.metrics()
        await self.batcher.submit(lambda p: p.hincrby(metrics, 'ingest_rejected_total{reason="malformed"}', 1))
