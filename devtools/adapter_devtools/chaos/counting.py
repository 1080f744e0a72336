"""What a chaos run's records mean, as pure functions: per fault, the items lost (accepted but never received),
received out of order, received more than once; how long deliveries stalled after the fault ended; which
processes exited; how often the ingest answered 503. And whether that meets the goals."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapter_devtools.chaos.model import STEADY, Answer, Arrival, Exit, Item, Window


@dataclass(frozen=True)
class Figures:
    """One row of the report: a fault (or `steady`, or `all`)."""

    name: str
    accepted: int = 0
    dropped: int = 0  # EMQX gave up (no 200 within its retry time)
    rejected: int = 0  # the ingest answered a status EMQX does not retry (a 500, a 400)
    lost: int = 0
    order: int = 0
    duplicates: int = 0
    gap: float | None = None  # s: the longest time without any delivery, from the fault's end
    delay: float | None = None  # s: the longest wait of one item counted from the fault's end (or its acceptance)
    gap_open: bool = False  # the gap, or the wait, was still open at the end of the window
    delay_open: bool = False
    exits: int = 0
    answers: int = 0  # ingest requests in flight while the fault was on
    unavailable: int = 0  # ... of which 503
    errors: int = 0  # ... and connection errors or timeouts
    note: str = ""
    length: float | None = None  # s the fault was on

    @property
    def share_503(self) -> float | None:
        return self.unavailable / self.answers if self.answers else None


@dataclass(frozen=True)
class Stuck:
    """What is still held once the load stopped and the drain ended."""

    held: dict[str, int] = field(default_factory=dict)  # target -> `held` of its health
    retry: int = 0  # members of the retry sets
    hold_entries: int = 0  # deliveries in the hold lists
    marks: int = 0  # hold lists holding nothing but their mark (the next delivery of the chain would wait)
    pending: int = 0  # stream entries read and never acknowledged
    unread: int = 0  # stream entries never read (after the consumer group's last delivered id)
    where: dict[str, int] = field(default_factory=dict)  # the keys that hold any of it

    @property
    def total(self) -> int:
        return max(sum(self.held.values()), self.hold_entries) + self.marks + self.retry + self.pending + self.unread


WORKER_KILL = "worker-kill"  # the fault (faults.py) after which a lease's wait is expected


@dataclass(frozen=True)
class Goals:
    cap: int  # duplicates allowed per fault: the in-flight cap per target (ADAPTER_DELIVERY_TARGET_CONCURRENCY)
    recovery: float = 2.0  # s
    lease: float = 0.0  # s (ADAPTER_DELIVERY_LEASE): what a killed worker's devices may wait on top of `recovery`

    def delay_bound(self, fault: str) -> float:
        """The longest per-device wait a fault may cause: `recovery`; after a worker is killed, one lease more (its
        partitions are taken over once its leases expire: docs/delivery.md "How it runs")."""
        return self.recovery + (self.lease if fault == WORKER_KILL else 0.0)


def window_of(windows: Sequence[Window], a: float, b: float) -> str:
    """The first fault whose window overlaps [a, b], else `steady`."""
    for w in windows:
        if w.overlaps(a, b):
            return w.name
    return STEADY


def at_time(windows: Sequence[Window], t: float) -> str:
    for w in windows:
        if w.holds(t):
            return w.name
    return STEADY


def first_arrivals(arrivals: Iterable[Arrival]) -> dict[str, Arrival]:
    """The first arrival of each delivery id."""
    first: dict[str, Arrival] = {}
    for a in sorted(arrivals, key=lambda a: a.at):
        first.setdefault(a.delivery_id, a)
    return first


def duplicates(arrivals: Iterable[Arrival]) -> dict[str, int]:
    """Delivery id -> how many times more than once it arrived."""
    return {i: n - 1 for i, n in Counter(a.delivery_id for a in arrivals).items() if n > 1}


def out_of_order(arrivals: Iterable[Arrival]) -> set[str]:
    """Delivery ids whose first arrival came after the first arrival of a later item of the same target and
    device (a higher sequence number)."""
    top: dict[tuple[str, str], int] = {}
    bad: set[str] = set()
    for a in sorted(first_arrivals(arrivals).values(), key=lambda a: a.at):
        key = (a.target, a.device)
        if key in top and a.seq < top[key]:
            bad.add(a.delivery_id)
        else:
            top[key] = a.seq
    return bad


def lost(items: Iterable[Item], received: set[str] | dict[str, Arrival]) -> list[Item]:
    return [i for i in items if i.accepted and i.delivery_id not in received]


def longest_gap(times: Sequence[float], end: float, until: float) -> tuple[float, bool]:
    """The longest stretch without an arrival between `end` and `until`, over the sorted arrival `times`, and
    whether it was still open at `until` (then it lasted at least that long: the next window counts on)."""
    prev, longest = end, 0.0
    for t in times[bisect.bisect_left(times, end):bisect.bisect_left(times, until)]:
        longest = max(longest, t - prev)
        prev = t
    return (until - prev, True) if until - prev >= longest else (longest, False)


def longest_delay(items: Iterable[Item], first: dict[str, Arrival], end: float,
                  until: float = float("inf")) -> tuple[float, bool] | None:
    """The longest wait of a received, accepted item from its acceptance or from `end` (the fault's end),
    whichever is later, up to its first arrival or `until` (the window's end) if that comes first; and whether
    that wait was still open at `until` (a later fault may have its share in it)."""
    waits = [(min(at, until) - max(i.done, end), at > until) for i in items
             if i.accepted and i.delivery_id in first and max(i.done, end) < until
             for at in (first[i.delivery_id].at,)]
    return max(waits, default=(0.0, False)) if waits else None


def figures(items: Sequence[Item], arrivals: Sequence[Arrival], answers: Sequence[Answer],
            windows: Sequence[Window], exits: Sequence[Exit]) -> list[Figures]:
    """One row per fault, one for `steady` (outside every window), and `all`. What the ingest did with an item
    (accepted, lost, dropped) counts against the first fault its ingest life (produced to answered) overlaps; an
    order violation against the first fault its whole life (produced to first arrival) overlaps; a duplicate
    against the fault during which it arrived; the delay of a fault over every item alive during it."""
    first = first_arrivals(arrivals)
    times = sorted(a.at for a in first.values())
    ingested = {i.delivery_id: window_of(windows, i.created, i.done) for i in items}
    life = {i.delivery_id: (i.created, first[i.delivery_id].at if i.delivery_id in first else i.done)
            for i in items}
    lived = {k: window_of(windows, *span) for k, span in life.items()}
    for a in first.values():  # ids the load never recorded (none expected): by their first arrival
        lived.setdefault(a.delivery_id, at_time(windows, a.at))
    bad = Counter(lived[i] for i in out_of_order(arrivals))
    seen: set[str] = set()
    dups: Counter[str] = Counter()
    for a in sorted(arrivals, key=lambda a: a.at):
        if a.delivery_id in seen:
            dups[at_time(windows, a.at)] += 1
        seen.add(a.delivery_id)
    rows = []
    for w in [*windows, None]:
        name = w.name if w else STEADY
        mine = [i for i in items if ingested[i.delivery_id] == name]
        alive = [i for i in items if (w.overlaps(*life[i.delivery_id]) if w else lived[i.delivery_id] == STEADY)]
        heard = [a for a in answers if w and a.sent <= w.end and a.at >= w.start]
        rows.append(Figures(
            name=name, accepted=sum(i.accepted for i in mine), dropped=sum(i.status == 0 for i in mine),
            rejected=sum(i.status not in (0, 200) for i in mine), lost=len(lost(mine, first)), order=bad[name],
            duplicates=dups[name], **_recovery(times, alive, first, w),
            exits=sum(at_time(windows, e.at) == name for e in exits), answers=len(heard),
            unavailable=sum(a.status == 503 for a in heard), errors=sum(a.status == 0 for a in heard),
            note=w.note if w else "", length=w.end - w.start if w else None))
    return [*rows, total(rows)]


def _recovery(times: Sequence[float], alive: list[Item], first: dict[str, Arrival],
              w: Window | None) -> dict[str, Any]:
    gap = longest_gap(times, w.end, w.until) if w else None
    delay = longest_delay(alive, first, w.end, w.until) if w else longest_delay(alive, first, float("-inf"))
    return {"gap": gap and gap[0], "gap_open": bool(gap and gap[1]), "delay": delay and delay[0],
            "delay_open": bool(delay and delay[1])}


def total(rows: Sequence[Figures]) -> Figures:
    gaps = [r.gap for r in rows if r.gap is not None]
    delays = [r.delay for r in rows if r.delay is not None]
    return Figures(name="all", accepted=sum(r.accepted for r in rows), dropped=sum(r.dropped for r in rows),
                   rejected=sum(r.rejected for r in rows), lost=sum(r.lost for r in rows),
                   order=sum(r.order for r in rows), duplicates=sum(r.duplicates for r in rows),
                   gap=max(gaps) if gaps else None, delay=max(delays) if delays else None,
                   exits=sum(r.exits for r in rows), answers=sum(r.answers for r in rows),
                   unavailable=sum(r.unavailable for r in rows), errors=sum(r.errors for r in rows))


def misses(row: Figures, goals: Goals) -> list[str]:
    """The goals one row misses (the `all` row: duplicates against the cap times the faults)."""
    out = []
    if row.lost:
        out.append(f"{row.lost} lost")
    if row.order:
        out.append(f"{row.order} out of order")
    if row.exits:
        out.append(f"{row.exits} worker exits")
    if row.rejected:
        out.append(f"{row.rejected} rejected by the ingest")
    if row.name != "all" and row.duplicates > goals.cap:
        out.append(f"{row.duplicates} duplicates > {goals.cap}")
    if row.name not in ("all", STEADY):
        if (row.gap or 0.0) > goals.recovery:
            out.append(f"recovery {row.gap:.1f} s > {goals.recovery:g} s")
        if (row.delay or 0.0) > goals.delay_bound(row.name):
            out.append(f"delay {row.delay:.1f} s > {goals.delay_bound(row.name):g} s")
    return out


def stuck_misses(stuck: Stuck) -> list[str]:
    return [f"{stuck.total} stuck"] if stuck.total else []
