"""lifecycle.lua's KEYS and ARGV, built by the names of the script's header (adapter/commands/calls.py), each mode's
own arguments pinned against the comment above it."""

from __future__ import annotations

import re

import pytest
from redis.crc import key_slot

from adapter.commands import calls
from adapter.store import scripts
from adapter.store.keys import Keys

LUA = scripts.source("commands/lifecycle.lua")
K = Keys("iot")
C = Keys("iot", 48)


def mode_comment(mode: str) -> str:
    """The comment block right above `local function <mode>()`."""
    lines = LUA[:LUA.index(f"local function {mode}()")].rstrip("\n").split("\n")
    block = []
    while lines and lines[-1].startswith("--"):
        block.insert(0, lines.pop())
    return " ".join(line.lstrip("- ") for line in block)


def named_positions(comment: str) -> list[tuple[int, str]]:
    """`ARGV 8 limit, 9 lease (ms)` -> [(8, "limit"), (9, "lease")]."""
    text = comment[comment.index("ARGV"):]
    return [(int(n), name) for n, name in re.findall(r"(?:ARGV |, )(\d+) (\w+)", text)]


def test_the_header_names_the_keys_and_prefixes_the_builders_give() -> None:
    header = LUA[:LUA.index("local due")]
    assert [f.name for f in calls.COMMANDS.keys] == ["due", "expiry", "all", "metrics"]
    assert [("..." if f.many else "") + f.name for f in calls.COMMANDS.args] == [
        "cmd_prefix", "resp_prefix", "active_prefix", "sn_prefix", "from_prefix", "from_sn_prefix", "mode",
        "...mode_args"]
    assert "7 mode: " + " | ".join(calls.MODE_ARGS) in header
    assert "local due, expiry, all, metrics = KEYS[1], KEYS[2], KEYS[3], KEYS[4]" in LUA
    assert "P_FROM, P_FROM_SN = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]\n" in LUA
    named = calls.claim_call(K, 0, 1, 2).named()
    assert named == {"due": K.commands_due(0), "expiry": K.commands_expiry(0), "all": K.commands(0),
                     "metrics": K.metrics_in(0), "cmd_prefix": K.command_prefix(0),
                     "resp_prefix": K.command_response_prefix(0), "active_prefix": K.commands_active_prefix(0),
                     "sn_prefix": K.commands_of_sn_prefix(0), "from_prefix": K.commands_from_prefix(0),
                     "from_sn_prefix": K.commands_from_sn_prefix(0), "mode": "claim", "mode_args": (1, 2)}


@pytest.mark.parametrize("mode", list(calls.MODE_ARGS))
def test_each_modes_argv_is_what_its_comment_names(mode: str) -> None:
    assert named_positions(mode_comment(mode)) == [(8 + i, n) for i, n in enumerate(calls.MODE_ARGS[mode])]


def test_the_groups_are_what_the_comments_name() -> None:
    assert "then groups of 4: " + ", ".join(calls.CREATE_GROUP) in mode_comment("create")
    assert "then groups of 3: id, outcome" in mode_comment("record") and "at (" in mode_comment("record")
    assert calls.RECORD_GROUP == ("id", "outcome", "at")


def test_the_builders_put_each_argument_at_its_named_place() -> None:
    call = calls.claim_call(K, 0, 100, 5000)
    assert call.script is calls.COMMANDS and call.args[6:] == ("claim", 100, 5000)
    argv = calls.record_call(K, 0, 30_000, "t1", [("1", "sent", 0), ("2", "retry", 99)]).args
    assert argv[6:] == ("record", 30_000, "t1", "1", "sent", 0, "2", "retry", 99)
    argv = calls.respond_call(K, 0, "iot:seen:x", 600, "1", "SN1", True, b"{}").args
    assert dict(zip(calls.MODE_ARGS["respond"], argv[7:], strict=True)) == {
        "seen": "iot:seen:x", "ttl": 600, "id": "1", "clientid": "SN1", "ok": "1", "answer": b"{}"}
    argv = calls.create_call(K, 0, ["web", "sh", "", b"{}", "0", 600, 3, "1"], ["1", 5, "SN1", "iot:client:SN1"],
                             only_new=True).args
    named = dict(zip(calls.MODE_ARGS["create"], argv[7:16], strict=True))
    assert named["from"] == "web" and named["publishNow"] == "1" and named["onlyNew"] == "1"
    assert argv[16:] == ("1", 5, "SN1", "iot:client:SN1")
    assert calls.wake_call(K, "SN1").args[6:] == ("wake", "SN1")
    assert calls.cancel_call(K, 0, "7").args[6:] == ("cancel", "7")
    assert calls.prune_call(K, 0, 10).args[6:] == ("prune", 10)
    assert calls.delivered_call(K, 0, "7", "SN1").args[6:] == ("delivered", "7", "SN1")


def test_on_the_cluster_a_call_is_of_one_slot() -> None:
    p = C.shard("SN1")
    ks, argv = calls.wake_call(C, "SN1")[1:]
    assert {key_slot(k.encode()) for k in [*ks, *(str(a) for a in argv[:6])]} == {key_slot(C.tag("SN1").encode())}
    assert ks == calls.prune_call(C, p, 1).keys
    others = {key_slot(calls.prune_call(C, q, 1).keys[0].encode()) for q in C.shards()}
    assert len(others) == 48
