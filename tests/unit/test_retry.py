"""Retry policy: schedule parsing, verdicts, Retry-After and the next delay."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.delivery.retry import (
    JITTER,
    MAX_RETRY_AFTER,
    classify,
    max_attempts,
    next_delay,
    retry_after,
)
from adapter.settings import Settings, parse_schedule

NOW = 1_764_000_000.0


def test_parse_schedule_units() -> None:
    assert parse_schedule("5s,30s,2m,1h") == (5.0, 30.0, 120.0, 3600.0)
    assert parse_schedule(" 1.5m , 10 ,1d, 250ms") == (90.0, 10.0, 86400.0, 0.25)
    assert parse_schedule("5S,2M") == (5.0, 120.0)


def test_default_setting_parses() -> None:
    schedule = parse_schedule(Settings().delivery_schedule)
    assert schedule == (5, 30, 120, 600, 1800, 3600, 10800, 21600)
    assert max_attempts(schedule) == 9


@pytest.mark.parametrize("text", ["", " ", "5s,,30s", "5s,", "fast", "5x", "-5s", "0s", "5 s", "1e3s", "s"])
def test_parse_schedule_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="schedule"):
        parse_schedule(text)


@pytest.mark.parametrize(("status", "error", "verdict"), [
    (200, None, "success"), (201, None, "success"), (204, None, "success"), (299, None, "success"),
    (408, None, "retry"), (429, None, "retry"), (500, None, "retry"), (502, None, "retry"),
    (599, None, "retry"), (301, None, "fail"), (302, None, "fail"), (304, None, "fail"), (400, None, "fail"),
    (401, None, "fail"), (404, None, "fail"), (410, None, "fail"), (413, None, "fail"), (100, None, "fail"),
    (600, None, "fail"), (None, "timeout", "retry"), (None, "connection: Connection refused", "retry"),
    (None, "tls: bad cert", "retry"), (None, None, "retry"), (None, "ssrf_blocked", "fail"),
    (None, "invalid_url: must name a host", "fail"),
])
def test_classify(status: int | None, error: str | None, verdict: str) -> None:
    assert classify(status, error) == verdict


def test_retry_after_seconds() -> None:
    assert retry_after("120", NOW) == 120.0
    assert retry_after(" 0 ", NOW) == 0.0
    assert retry_after("999999", NOW) == MAX_RETRY_AFTER
    assert retry_after("9" * 400, NOW) == MAX_RETRY_AFTER


def test_retry_after_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 90, UTC)
    assert retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(90)
    assert retry_after(format_datetime(when, usegmt=True), NOW + 200) == 0.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 -0000", 1445412480.0 - 30) == pytest.approx(30)
    tomorrow = format_datetime(datetime.fromtimestamp(NOW + 86400, UTC), usegmt=True)
    assert retry_after(tomorrow, NOW) == MAX_RETRY_AFTER


@pytest.mark.parametrize("value", [
    None, "", "soon", "-5", "1.5", "١٢", "Wed, 21 Oct 2015", "Wed, 21 Oct 99999 07:28:00 GMT",
    "1 Jan 2020 99999999999999999999:00:00 GMT", "1 Jan 2020 00:00:00 +99999999999999999999",
])
def test_retry_after_unreadable(value: str | None) -> None:
    assert retry_after(value, NOW) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises_and_stays_in_range(value: str) -> None:
    got = retry_after(value, NOW)
    assert got is None or 0 <= got <= MAX_RETRY_AFTER


def test_next_delay_walks_the_schedule_then_stops() -> None:
    schedule = (5.0, 30.0, 120.0)
    rng = random.Random(1)
    delays = [next_delay(n, schedule, rng) for n in (1, 2, 3, 4, 5)]
    assert delays[3:] == [None, None]
    for got, want in zip(delays[:3], schedule, strict=True):
        assert got is not None and want * (1 - JITTER) <= got <= want * (1 + JITTER)


def test_next_delay_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        next_delay(0, (5.0,), random.Random(0))


def test_retry_after_is_a_floor_not_a_ceiling() -> None:
    rng = random.Random(3)
    assert next_delay(1, (5.0,), rng, retry_after=600.0) == 600.0
    small = next_delay(1, (100.0,), rng, retry_after=1.0)
    assert small is not None and small >= 80.0
    assert next_delay(2, (5.0,), rng, retry_after=600.0) is None


def test_jitter_spreads() -> None:
    rng = random.Random(7)
    values = {next_delay(1, (100.0,), rng) for _ in range(50)}
    assert len(values) > 40


@given(attempt=st.integers(1, 20), schedule=st.lists(st.floats(0.001, 1e6), min_size=1, max_size=10),
       seed=st.integers(0, 2**32), ra=st.none() | st.floats(0, MAX_RETRY_AFTER))
def test_next_delay_properties(attempt: int, schedule: list[float], seed: int, ra: float | None) -> None:
    got = next_delay(attempt, schedule, random.Random(seed), ra)
    if attempt > len(schedule):
        assert got is None
        return
    base = schedule[attempt - 1]
    assert got is not None
    assert got >= base * (1 - JITTER) - 1e-9
    assert got <= max(base * (1 + JITTER), ra or 0.0) + 1e-9
    if ra is not None:
        assert got >= ra


@given(st.lists(st.tuples(st.integers(1, 10_000), st.sampled_from(["ms", "s", "m", "h", "d", ""])),
                min_size=1, max_size=12))
def test_parse_schedule_roundtrip(steps: list[tuple[int, str]]) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}
    text = ",".join(f"{n}{unit}" for n, unit in steps)
    assert parse_schedule(text) == pytest.approx(tuple(n * factor[u] for n, u in steps))
