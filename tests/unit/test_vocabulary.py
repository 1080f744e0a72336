"""The enums that name states and outcomes are the words the Lua scripts and the v1 API use: pinned here, so a
rename on one side fails a test instead of silently splitting the vocabulary."""

from __future__ import annotations

import re

from adapter.api import jobs as jobs_api
from adapter.commands.rules import REASONS, STATES, CommandState, FailReason
from adapter.delivery.model import DEAD_LETTERED, RECORDED, OutcomeName
from adapter.jobs.progress import STATES as JOB_STATES
from adapter.store import scripts
from adapter.targets.records import OUTCOMES


def lua_words(path: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, scripts.source(path)))


def test_command_states_are_the_seeds() -> None:
    assert STATES == {0: "ready", 1: "in progress", 2: "success", 3: "failed"}  # seed: "state"
    assert [int(s) for s in CommandState] == [0, 1, 2, 3]


def test_every_fail_reason_is_one_commands_lua_writes() -> None:
    source = scripts.source("commands/lifecycle.lua")
    assert tuple(r.value for r in FailReason) == REASONS
    for reason in FailReason:
        assert f"'{reason.value}'" in source, reason


def test_outcome_lua_knows_only_outcome_names() -> None:
    compared = lua_words("delivery/outcome.lua", r"outcome == '([a-z]+)'")
    assert compared and compared <= {o.value for o in OutcomeName}
    assert set(OUTCOMES) == {o.value for o in RECORDED}
    assert set(DEAD_LETTERED) <= set(RECORDED)


def test_job_states_are_the_documented_words() -> None:
    """docs/delivery.md and docs/commands.md name these; the API schema publishes them."""
    assert JOB_STATES == ("queued", "started", "finished", "failed")
    schema = jobs_api.ENDPOINTS[0].response
    assert schema is not None
    assert schema["properties"]["state"]["enum"] == list(JOB_STATES)
