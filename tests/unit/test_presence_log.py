"""A device's presence log and the online share its chart draws (adapter/devices/presence_log.py,
adapter/stats/presence.py): pure functions."""

from __future__ import annotations

import re

from adapter.devices.presence_log import LOG_MAX, Transition, from_hash, parse
from adapter.stats.presence import online_share
from adapter.store import scripts

T0 = 1_764_000_000  # s, a whole hour
MS = 1000


def test_the_log_bound_is_the_scripts() -> None:
    found = re.search(r"local PRESENCE_LOG_MAX = (\d+)", scripts.source("delivery/fanout.lua"))
    assert found and int(found.group(1)) == LOG_MAX


def test_entries_newest_first_become_transitions_oldest_first() -> None:
    log = [f"{(T0 + 90) * MS} 0 keepalive_timeout", "garbage", f"{(T0 + 30) * MS} 1 connected", "12 x y"]
    assert parse(log) == [Transition((T0 + 30) * MS, True), Transition((T0 + 90) * MS, False)]


def test_a_hash_without_a_log_tells_its_last_transitions() -> None:
    assert from_hash({"online": "1", "online_time": "5000", "offline_time": "3000"}) == \
        [Transition(3000, False), Transition(5000, True)]
    assert from_hash({"online": "0", "online_time": "5000", "offline_time": "9000"}) == \
        [Transition(5000, True), Transition(9000, False)]
    assert from_hash({"online": "1", "online_time": "5000"}) == [Transition(5000, True)]
    assert from_hash({"online": "0", "online_time": "5000"}) == []  # offline, but since when is not known
    assert from_hash({}) == []


def test_each_step_answers_its_share_online_of_the_known_time() -> None:
    log = [Transition((T0 + 30) * MS, True), Transition((T0 + 90) * MS, False), Transition((T0 + 150) * MS, True)]
    now = (T0 + 300) * MS
    points = online_share(log, T0, T0 + 240, 60, now)
    # minute 0: unknown before +30, online after: 1.0; minute 1: online to +90, then off: 0.5; minute 2: off to
    # +150, then on: 0.5; minutes 3 and 4: online
    assert points == [(T0, 1.0), (T0 + 60, 0.5), (T0 + 120, 0.5), (T0 + 180, 1.0), (T0 + 240, 1.0)]
    assert online_share(log, T0, T0 + 240, 120, now) == [(T0, 0.67), (T0 + 120, 0.75), (T0 + 240, 1.0)]


def test_before_the_first_transition_and_after_now_nothing_is_known() -> None:
    log = [Transition((T0 + 120) * MS, False)]
    assert online_share(log, T0, T0 + 180, 60, (T0 + 150) * MS) == [(T0, None), (T0 + 60, None),
                                                                     (T0 + 120, 0.0), (T0 + 180, None)]
    assert online_share([], T0, T0 + 60, 60, (T0 + 600) * MS) == [(T0, None), (T0 + 60, None)]


def test_a_day_of_flapping_at_a_minute_step() -> None:
    log = [Transition((T0 + i * 1800) * MS, i % 2 == 0) for i in range(LOG_MAX)]
    points = online_share(log, T0, T0 + 86_399, 60, (T0 + 86_400) * MS)
    assert len(points) == 1440
    assert [v for _, v in points[:60]] == [1.0] * 30 + [0.0] * 30
    assert points[-1] == (T0 + 86_340, 0.0)  # the last transition (offline) holds until now
