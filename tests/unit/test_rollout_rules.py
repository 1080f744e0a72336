"""The pure rules of a rollout (adapter/rollouts/spec.py): ramp, token bucket, abort, the spec's round trip, and
how a command's state becomes an execution's outcome (adapter/rollouts/driver.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapter.commands.rules import Limits
from adapter.errors import AppError
from adapter.rollouts.driver import TICK_S, outcome_of, pause
from adapter.rollouts.spec import (
    AbortRule,
    Outcome,
    Ramp,
    abort_reason,
    parse_spec,
    rate_now,
    refill,
    spec_json,
    spec_of,
)

LIMITS = Limits(max_targets=10_000, body_max_bytes=65_536, default_expires=3600, max_expires=86_400)
BODY = {"command": {"command": "sh", "body": {"shcmd": "uptime"}, "maxRetries": 2, "expires": 600},
        "selector": {"sns": ["B", "A"], "online": True}, "rate": {"perMinute": 600}, "maxInFlight": 50,
        "timeout": 30, "abort": {"failureRatio": 0.2, "minExecuted": 10}, "name": "fw 1.4"}


def test_a_ramp_multiplies_the_start_rate_every_n_successes_up_to_the_cap() -> None:
    spec = replace(parse_spec(BODY, LIMITS), ramp=Ramp(start=60, factor=2, every=10))
    assert [rate_now(spec, s) for s in (0, 9, 10, 25, 30, 10**9)] == [60, 60, 120, 240, 480, 600]
    assert rate_now(replace(spec, ramp=None), 0) == 600


def test_the_bucket_spaces_dispatches_and_saves_up_at_most_a_second() -> None:
    assert refill(0, 100, 600) == pytest.approx(1.0)  # 10/s: one per 100 ms
    assert refill(0, 60_000, 600) == 10  # capped at one second's worth
    assert refill(0, 60_000, 6) == 1  # at least one
    assert refill(0.5, -5, 600) == 0.5  # a clock step back adds nothing


def test_the_abort_rule_fires_on_the_ratio_after_min_executed_or_on_the_count() -> None:
    rule = AbortRule(failure_ratio=0.2, min_executed=10, max_failures=None)
    assert abort_reason(rule, 5, 4) is None  # 9 executed: too few to judge
    assert abort_reason(rule, 8, 2) is not None  # 20 % of 10
    assert abort_reason(rule, 9, 2) is None
    assert "maxFailures" in str(abort_reason(AbortRule(max_failures=3), 100, 3))
    assert abort_reason(AbortRule(), 0, 1000) is None


def test_a_spec_round_trips_through_its_stored_json_without_its_sn_list() -> None:
    spec = parse_spec(BODY, LIMITS)
    stored = spec_json(spec)
    assert stored["selector"] == {"online": True, "snList": 2}
    back = spec_of(stored, LIMITS)
    assert back.selector.sns == () and back.selector.online is True
    assert replace(back, selector=spec.selector) == spec


def test_the_command_part_is_checked_by_the_commands_rules() -> None:
    for command in ({"command": "sh", "to": [{"sn": "A"}]}, {"command": "sh", "method": "put"},
                    {"command": "sh", "expires": 10**9}):
        with pytest.raises(AppError) as err:
            parse_spec({**BODY, "command": command}, LIMITS)
        assert err.value.status == 400


def test_a_command_state_becomes_an_outcome() -> None:
    assert outcome_of("2", "") is Outcome.SUCCEEDED
    assert outcome_of("3", "canceled") is Outcome.CANCELLED
    assert outcome_of("3", "rejected") is Outcome.FAILED
    assert outcome_of(None, None) is Outcome.FAILED  # expired unfinished
    assert outcome_of("0", None) is None and outcome_of("1", None) is None


def test_rollout_lua_spells_the_states_and_outcomes_of_the_enums() -> None:
    from adapter.rollouts.calls import ROLLOUT
    from adapter.rollouts.spec import ACTIVE, RolloutState

    lua = ROLLOUT.script
    for state in ("running", "paused", "cancelled"):  # what its control and commit write themselves
        assert f"'{state}'" in lua and state in {s.value for s in RolloutState}, state
    for state in RolloutState:  # the end states come from the driver, named in the header
        assert state.value in lua, state
    assert "ACTIVE = {" + ", ".join(f"{s} = true" for s in ("queued", "running", "paused")) + "}" in lua
    assert {s.value for s in ACTIVE} == {"queued", "running", "paused"}
    assert f"' {Outcome.IN_FLIGHT.value}'" in lua  # a dispatched execution's outcome


def test_a_driver_behind_waits_as_long_as_its_tick_took() -> None:
    """At full speed the driver leaves Redis and the CPU to others half the time (the API's reads)."""
    assert pause(True, 0.03) == pytest.approx(0.03)
    assert pause(True, 5.0) == TICK_S  # never longer than an ordinary tick's wait
    assert pause(True, -1.0) == 0.0
    assert pause(False, 0.03) == TICK_S
