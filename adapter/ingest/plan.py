"""The ingest (docs/design.md §4): what each EMQX event changes, queued as atomic scripts on a shared pipeline.

`plan` is pure: it turns an event into a label for the counters, an optional rejection reason, and the
packed script calls to send. `Ingest.apply` sends them through the batcher and answers once written.

Remote control (adapter/commands/rules.py) rides on the same plans: a device subscribing to its own command
topic or sending a heartbeat wakes its waiting commands (inside the device script, wake.lua); an answer on
`dma/resp/cmd` and EMQX's `message.acked` of a command delivery update the command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from adapter.commands.rules import CommandCalls, acked_command, parse_response
from adapter.devices.calls import MAX_PERIPHERALS, PERIPHERAL_TTL, DeviceCommands, packed
from adapter.errors import AppError
from adapter.ingest.turns import Turn
from adapter.protocol import uplink
from adapter.protocol.events import (
    REST_API_CLIENT,
    Connected,
    Disconnected,
    Event,
    MessageAcked,
    MessagePublished,
    Subscribed,
    Unknown,
    Unsubscribed,
)
from adapter.store.batcher import Batching
from adapter.store.keys import Keys
from adapter.store.metrics import MetricsBuffer
from adapter.targets.forwarding import Forward, forward_call, forward_of
from adapter.targets.route_table import RouteTable


@dataclass(frozen=True)
class Plan:
    label: str
    rejected: str | None = None
    commands: tuple[bytes, ...] = ()


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


def plan(ev: Event, cmd: DeviceCommands, now_ms: int, ctl: CommandCalls, fwd: Forward | None = None) -> Plan:
    """`cmd` packs the device calls, `ctl` the remote-control calls; `fwd` is what a message's routes
    write (forwarding.py), carried by the message's own script call."""
    label = _label(ev)
    match ev:
        case Connected() | Disconnected():
            return Plan(label, commands=(cmd.presence(ev),))
        case Subscribed() if uplink.is_own_command_topic(ev.clientid, ev.topic):
            # EMQX's own time of the event when it sent one, so that a redelivery writes the same activeTime
            return Plan(label, commands=(cmd.mark(ev.clientid, now_ms if ev.at is None else ev.at),))
        case MessagePublished() if ev.clientid != REST_API_CLIENT:
            return _message_plan(ev, cmd, ctl, label, fwd)
        case MessageAcked():
            cid = acked_command(ev)
            return Plan(label, commands=(ctl.delivered(cid, ev.clientid),) if cid is not None else ())
    return Plan(label)


def _message_plan(msg: MessagePublished, cmd: DeviceCommands, ctl: CommandCalls, label: str,
                  fwd: Forward | None) -> Plan:
    kind = uplink.report_kind(msg)
    sn, at = msg.clientid, msg.received_at

    def rejected(reason: str) -> Plan:  # the device layer drops it; its routes still get it
        return Plan(label, rejected=reason, commands=(packed(forward_call(fwd)),) if fwd else ())

    if msg.topic == uplink.RESPONSE_TOPIC:
        answer = parse_response(msg)
        if isinstance(answer, uplink.Rejected):
            return rejected(answer.reason)
        return Plan(label, commands=(cmd.active(sn, at, fwd), ctl.respond(msg.id, answer)))
    if kind is None:
        return Plan(label, commands=(cmd.active(sn, at, fwd),))
    report = uplink.parse_report(msg, kind)
    if isinstance(report, uplink.Rejected):
        return rejected(report.reason)
    if kind in ("procs", "sys", "versions"):
        return Plan(label, commands=(cmd.report(sn, at, kind, uplink.stored_report(report), fwd),))
    if kind == "heartbeat":
        boot, dur = uplink.heartbeat_fields(report)
        return Plan(label, commands=(cmd.heartbeat(sn, at, boot, dur, fwd),))
    if kind == "peripherals":
        items = uplink.peripherals_of(report)
        if isinstance(items, uplink.Rejected):
            return rejected(items.reason)
        return Plan(label, commands=(cmd.peripherals(sn, at, items, fwd),))
    return Plan(label, commands=(cmd.mark(sn, at, fwd),))


def routed(ev: Event, routes: RouteTable, keys: Keys) -> Forward | None:
    """Every message (DMA uplink included, even one the device layer rejects) goes to its routes too; until the
    table has loaded once, a message is refused with 503 (EMQX sends it again) rather than stored unforwarded."""
    if not isinstance(ev, MessagePublished):
        return None
    if routes.version is None:
        raise RoutesNotLoaded("unavailable", "the message routes are not loaded yet, try again",
                              headers={"Retry-After": "1"})
    return forward_of(ev, routes.match(ev.topic), keys)


class RoutesNotLoaded(AppError):
    """A message arrived before the route table's first load."""


@lru_cache(maxsize=64)
def _events_field(label: str) -> str:
    return f'ingest_events_total{{type="{label}"}}'


@lru_cache(maxsize=64)
def _rejected_field(reason: str) -> str:
    return f'ingest_rejected_total{{reason="{reason}"}}'


class Ingest:
    def __init__(self, batcher: Batching, keys: Keys, metrics: MetricsBuffer, routes: RouteTable, *,
                 max_peripherals: int = MAX_PERIPHERALS, peripheral_ttl: int = PERIPHERAL_TTL) -> None:
        self.batcher = batcher
        self.keys = keys
        self.commands = DeviceCommands(keys, max_peripherals=max_peripherals, peripheral_ttl=peripheral_ttl)
        self.command_calls = CommandCalls(keys)
        self.metrics = metrics
        self.routes = routes

    async def apply(self, ev: Event, turn: Turn | None = None) -> Plan:
        """Write the event's effects; return once Redis has them. Counted once written. `turn`: this event's
        place among others answered together (adapter/api/protocol.py): its effects are submitted after the
        earlier ones', before the later ones'."""
        if isinstance(ev, MessagePublished):
            await self.routes.fresh()  # (a no-op unless the table's poll fell behind: route_table.py)
        try:
            fwd = routed(ev, self.routes, self.keys)
        except RoutesNotLoaded:
            self.count_unavailable("routes_not_loaded")
            raise
        p = plan(ev, self.commands, int(time.time() * 1000), self.command_calls, fwd)
        if turn is None:
            results = await self.batcher.submit(p.commands)
        else:
            if turn.before is not None and not turn.before.set:
                await turn.before.wait()
            submitted = self.batcher.submit(p.commands)  # its commands join the batch when it first runs: now
            turn.done.fire()  # (the next one runs once this one waits on Redis)
            results = await submitted
        for result in results:
            if isinstance(result, Exception):
                raise result
        self.metrics.inc(_events_field(p.label))
        if p.rejected:
            self.metrics.inc(_rejected_field(p.rejected))
        return p

    def count_malformed(self, reason: str = "malformed") -> None:
        """A body refused with 400: `malformed`, or `bad_clientid` (events.BadClientId)."""
        self.metrics.inc(_rejected_field(reason))

    def count_unavailable(self, reason: str) -> None:
        self.metrics.inc(f'ingest_unavailable_total{{reason="{reason}"}}')
