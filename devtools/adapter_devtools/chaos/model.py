"""The records of one chaos run, as plain values: what the load sent (`Item`), what the receiver got
(`Arrival`), how the ingest answered (`Answer`), when each fault was on (`Window`) and which processes exited
on their own (`Exit`). The counting (counting.py) is pure functions of these."""

from __future__ import annotations

from dataclasses import dataclass

STEADY = "steady"
"""The name under which everything outside every fault's window is counted."""


@dataclass(frozen=True, slots=True)
class Item:
    """One event the load sent, and the delivery it must cause: `delivery_id` (the webhook-id) to `target`
    (`route:<id>` or `callback:<id>`), carrying the device's `seq` (a message's sequence number, a status
    change's presence version). Times are monotonic seconds: `created` when the device produced it, `done`
    when EMQX was done with it, with `status`: 200 (accepted), another status EMQX does not retry (rejected),
    or 0 (EMQX gave up retrying: dropped)."""

    delivery_id: str
    target: str
    device: str
    seq: int
    created: float
    done: float
    status: int

    @property
    def accepted(self) -> bool:
        return self.status == 200


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request the receiver got."""

    delivery_id: str
    target: str
    device: str
    seq: int
    at: float


@dataclass(frozen=True, slots=True)
class Answer:
    """One POST of an event to the ingest: when it was sent, when its answer came, and its status (0: a
    connection error or a timeout)."""

    sent: float
    at: float
    status: int


@dataclass(frozen=True, slots=True)
class Window:
    """One fault: on from `start` to `end`; what happens until `until` (its settle time, or the next fault)
    is counted against it."""

    name: str
    start: float
    end: float
    until: float
    note: str = ""

    def holds(self, t: float) -> bool:
        return self.start <= t < self.until

    def overlaps(self, a: float, b: float) -> bool:
        return a < self.until and b >= self.start


@dataclass(frozen=True, slots=True)
class Exit:
    """A process that exited without the suite killing it."""

    process: str
    at: float
    code: int
