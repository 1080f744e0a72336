"""Per-minute series (docs/api.md "Series"): what each metric is, how a ring of samples is laid out in one Redis
string, and how a window of it becomes points. Pure: no I/O.

A series is one string of `RING` fixed slots of `SLOT.size` bytes: slot `minute % RING` holds (minute, first
sample, last sample), big-endian. The sampler writes a minute's whole slot with its first sample of that minute,
then only the last sample's bytes (SETRANGE: one key, one call, any layout); a slot still holding an older minute
is simply not in the window asked for, so the string never grows past `RING * SLOT.size` bytes (30 KB).

Gauges (devices online) answer their last sample. Counters keep the running total the service already counts
(metrics hash, target counters), so that several samples in one minute, a missed minute or a restarted sampler
never count twice: a minute's value is its last total minus the previous minute's; without a previous minute (the
first minute sampled, or after a gap) its last minus its own first, what the minute's samples saw. A total that
went down was reset: the minute counts its new total.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from adapter.targets.health import TARGET_FIELDS

RING = 1500  # minutes kept: a day, the minute before it, and some slack
SLOT = struct.Struct(">Iqq")  # minute since the epoch, first sample, last sample
LAST = struct.Struct(">q")
LAST_AT = 12  # the last sample's offset in its slot
MINUTE = 60
DAY = 86_400

Point = tuple[int, float | None]  # (start of the bucket, s; its value or None: no sample)


class Kind(StrEnum):
    GAUGE = "gauge"  # a level, sampled: a bucket answers the mean of its minutes
    COUNTER = "counter"  # a running total, sampled: a bucket answers how many in its minutes


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    description: str
    target: str | None = None  # "route" or "callback": one series per target of that kind (`id`)
    device: bool = False  # one series per device (`sn`), drawn from its presence log (stats/presence.py)

    @property
    def field(self) -> str:
        """The target series' own name (`route.delivered` -> `delivered`)."""
        return self.name.partition(".")[2]


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("devices.online", Kind.GAUGE, "devices online"),
    Metric("ingest.events", Kind.COUNTER, "EMQX events received on /emqx/events"),
    Metric("ingest.messages", Kind.COUNTER, "messages published by MQTT clients (message.publish events)"),
    Metric("commands.succeeded", Kind.COUNTER, "commands that ended in success"),
    Metric("commands.failed", Kind.COUNTER, "commands that ended failed (any reason)"),
    Metric("deliveries.delivered", Kind.COUNTER, "callback and route deliveries delivered (2xx)"),
    Metric("deliveries.failed", Kind.COUNTER, "callback and route deliveries dead-lettered"),
    *(Metric(f"{kind}.{field}", Kind.COUNTER, f"this {kind}'s deliveries {verb}", target=kind)
      for kind in ("route", "callback")
      for field, verb in zip(TARGET_FIELDS, ("delivered (2xx)", "dead-lettered"), strict=True)),
    Metric("device.online", Kind.GAUGE, "one device's share of each step online (0 to 1)", device=True),
)}


def minute_of(seconds: float) -> int:
    return int(seconds // MINUTE)


def _clamp(value: int) -> int:
    return max(0, min(int(value), 2**63 - 1))


def slot(minute: int, value: int, *, opens: bool) -> tuple[int, bytes]:
    """Where (byte offset) and what a sample of `minute` writes: the whole slot when it `opens` the minute (its
    first sample), else only the slot's last sample."""
    offset = (minute % RING) * SLOT.size
    if opens:
        return offset, SLOT.pack(minute, _clamp(value), _clamp(value))
    return offset + LAST_AT, LAST.pack(_clamp(value))


def decode(raw: bytes | None) -> dict[int, tuple[int, int]]:
    """The samples a ring holds, minute -> (first, last) (empty slots, minute 0, are left out)."""
    if not raw:
        return {}
    usable = len(raw) - len(raw) % SLOT.size
    return {minute: (first, last) for minute, first, last in SLOT.iter_unpack(raw[:usable]) if minute}


def per_minute(samples: Mapping[int, tuple[int, int]], kind: Kind, first: int, last: int) -> list[int | None]:
    """Each minute's value from `first` to `last` (None: not sampled): a gauge's last sample; a counter's last
    total minus the previous minute's, or without one minus its own first (a total that went down: reset)."""
    out: list[int | None] = []
    for m in range(first, last + 1):
        now = samples.get(m)
        if now is None or kind is Kind.GAUGE:
            out.append(None if now is None else now[1])
            continue
        before = samples.get(m - 1)
        base = before[1] if before is not None else now[0]
        out.append(now[1] - base if now[1] >= base else now[1])
    return out


def buckets(values: Iterable[int | None], first: int, step: int, kind: Kind) -> list[Point]:
    """Minutes from `first` grouped `step` minutes to a point (start time in s): a counter's sum, a gauge's mean
    (rounded to 0.01); None where no minute of the bucket has a value."""
    points: list[Point] = []
    chunk: list[int] = []
    seen = 0
    start = first
    for n, value in enumerate(values):
        if value is not None:
            chunk.append(value)
        seen += 1
        if seen == step:
            points.append((start * MINUTE, _merge(chunk, kind)))
            chunk, seen, start = [], 0, first + n + 1
    if seen:
        points.append((start * MINUTE, _merge(chunk, kind)))
    return points


def _merge(values: list[int], kind: Kind) -> float | None:
    if not values:
        return None
    if kind is Kind.COUNTER:
        return sum(values)
    return round(sum(values) / len(values), 2)


def window(raw: bytes | None, kind: Kind, start: int, end: int, step: int) -> list[Point]:
    """The points of a ring between `start` and `end` (s, both included, by their minutes), `step` s apart."""
    first, last = minute_of(start), minute_of(end)
    return buckets(per_minute(decode(raw), kind, first, last), first, max(1, step // MINUTE), kind)
