"""A device's online share per step, from its presence transitions (adapter/devices/presence_log.py): the series
`device.online` of `GET /stats/series` (docs/api.md "Series"). Pure: no I/O.

A step answers the share of its time the device was online (0 to 1, rounded to 0.01), counting only the time
that is known: after the oldest transition kept and before now. A step with no known time answers None.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapter.devices.presence_log import Transition
from adapter.stats.series import MINUTE, Point, minute_of


def online_share(transitions: Sequence[Transition], start: int, end: int, step: int, now_ms: int) -> list[Point]:
    """The points between `start` and `end` (s, both included by their minutes, as series.window), `step` s apart;
    `transitions` oldest first."""
    first, stop = minute_of(start) * MINUTE, (minute_of(end) + 1) * MINUTE
    step = max(MINUTE, step - step % MINUTE)
    ends = [t.at_ms for t in transitions[1:]] + [now_ms] if transitions else []
    spans = [(t.at_ms, until, t.online) for t, until in zip(transitions, ends, strict=True) if until > t.at_ms]
    points: list[Point] = []
    j = 0
    for lo_s in range(first, stop, step):
        lo, hi = lo_s * 1000, min(min(lo_s + step, stop) * 1000, now_ms)
        while j < len(spans) and spans[j][1] <= lo:
            j += 1
        known = on = 0
        k = j
        while k < len(spans) and spans[k][0] < hi:
            overlap = min(hi, spans[k][1]) - max(lo, spans[k][0])
            if overlap > 0:
                known += overlap
                on += overlap if spans[k][2] else 0
            k += 1
        points.append((lo_s, round(on / known, 2) if known else None))
    return points
