"""The command runner's pure parts: the backoff after broker errors, its schedule setting, the lease."""

from __future__ import annotations

import random

import pytest

from adapter.commands.runner import backoff, lease_ms, schedule_of
from adapter.settings import ConfigError, Settings


def test_backoff_follows_the_schedule_and_repeats_its_last_step() -> None:
    rng = random.Random(1)
    waits = [backoff(n, (1.0, 10.0), rng) for n in (1, 2, 3, 9)]
    assert 0.8 <= waits[0] <= 1.2 and all(8.0 <= w <= 12.0 for w in waits[1:])
    assert 0.8 <= backoff(0, (1.0, 10.0), rng) <= 1.2


def test_the_default_schedule_and_a_bad_one() -> None:
    assert schedule_of(Settings()) == (1.0, 2.0, 5.0, 10.0, 30.0)
    for bad in ("soon", "1s,,2s"):
        with pytest.raises(ConfigError, match="ADAPTER_COMMAND_RETRY_SCHEDULE"):
            Settings.from_env({"ADAPTER_COMMAND_RETRY_SCHEDULE": bad}, dotenv=None)


def test_the_lease_outlasts_a_bulk_publish_and_its_one_by_one_fallback() -> None:
    assert lease_ms(Settings(emqx_timeout=2.5)) == 15_000


def test_the_room_is_shared_over_the_partitions_and_the_remainder_goes_round() -> None:
    from adapter.commands.runner import shares_of

    assert shares_of(500, 1, 7) == [500]
    assert shares_of(100, 48, 0) == [3] * 4 + [2] * 44
    assert sum(shares_of(100, 48, 5)) == 100 and shares_of(100, 48, 5)[5:9] == [3] * 4
    seen = [0] * 48
    for turn in range(48):
        for p, n in enumerate(shares_of(10, 48, turn * 10)):
            seen[p] += n
    assert seen == [10] * 48  # over enough ticks every partition gets the same
