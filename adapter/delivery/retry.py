"""Retry policy for outbound deliveries, as pure functions: the backoff schedule, the verdict on one
attempt, `Retry-After`, and the delay before the next try.

The schedule lists the waits *between* tries: with "5s,30s,2m" a delivery is tried at most four times
(once, then after ~5 s, ~30 s and ~2 min); when it is exhausted the delivery is dead-lettered.

Verdicts on one attempt (`classify`):
- success: any 2xx.
- retry: no answer at all (timeout, refused, reset, DNS or TLS trouble), 408, 429 and 5xx.
- fail (at once, no retry): every other status (3xx, since redirects are not followed, and 4xx), and the
  sender's errors that no retry can cure: `ssrf_blocked` (the target resolves only to refused addresses;
  it is a configuration problem, and retrying would only probe the network again) and `invalid_url`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal

Verdict = Literal["success", "retry", "fail"]

MAX_RETRY_AFTER = 3600.0
"""A `Retry-After` longer than this is cut to it: a target must not park a delivery for days."""

JITTER = 0.2
FATAL_ERRORS = frozenset({"ssrf_blocked", "invalid_url", "invalid_header"})
RETRY_STATUSES = frozenset({408, 429})

def classify(status: int | None, error: str | None) -> Verdict:
    if status is not None:
        if 200 <= status < 300:
            return "success"
        return "retry" if status in RETRY_STATUSES or 500 <= status < 600 else "fail"
    kind = (error or "").split(":", 1)[0].strip()
    return "fail" if kind in FATAL_ERRORS else "retry"


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or an HTTP-date), in [0, MAX_RETRY_AFTER];
    None when absent or unreadable. `now` is a Unix time."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # a "-0000" zone: still UTC for HTTP
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def next_delay(attempt: int, schedule: Sequence[float], rng: random.Random,
               retry_after: float | None = None) -> float | None:
    """Seconds until the next try after `attempt` tries so far (1 after the first), or None when the
    schedule is exhausted (dead letter). The scheduled wait gets ±JITTER; `retry_after` is a floor."""
    if attempt < 1:
        raise ValueError(f"attempt counts tries already made and starts at 1, not {attempt}")
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None and math.isfinite(retry_after):
        delay = max(delay, retry_after)
    return delay


def max_attempts(schedule: Sequence[float]) -> int:
    return len(schedule) + 1
