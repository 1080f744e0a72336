"""The delivery engine's script calls, pinned: the stream entry schema against the one Lua helper that writes entries
(entries.lua `add_entry`, included by every script that writes them) and the scripts that read them, each call's
KEYS/ARGV builder against its script's header, and the cluster layout (one slot a call)."""

from __future__ import annotations

import re

import pytest
from redis.crc import key_slot

from adapter.delivery import dead_letters
from adapter.delivery.model import (
    ENTRY_FIELDS,
    HOLD,
    MOVE_DUE,
    OUTCOME,
    RELEASED_FIELD,
    Delivery,
    Limits,
    Outcome,
    OutcomeName,
    hold_call,
    move_due_call,
    outcome_call,
    outcomes,
)
from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.targets.health import merged_state

ONE, CLUSTER = Keys("iot"), Keys("iot", 48)
D = Delivery("callback:3", "SN1", "d:SN1:7:callback:3", b'{"x":1}', 2, 0)
LUA = {"delivery/outcome.lua": OUTCOME.script, "delivery/hold.lua": HOLD.script, "MOVE_DUE": MOVE_DUE.script}
ENTRIES = scripts.source("delivery/entries.lua")
WRITERS = {"delivery/fanout.lua": scripts.source("delivery/fanout.lua"),
           "targets/forward.lua": scripts.source("targets/forward.lua"), "delivery/outcome.lua": OUTCOME.script,
           "MOVE_DUE": MOVE_DUE.script, "REPLAY": dead_letters.REPLAY.script}


def _xadd_fields(source: str) -> list[list[str]]:
    """The field names of every XADD in a script: the quoted words at the field positions after '*'."""
    out = []
    for call in re.findall(r"redis\.call\('XADD',(.*?)\)\n", source, re.S):
        after = call.split("'*',", 1)[1]
        words = [w.strip() for w in after.split(",")]
        out.append([w.strip("'") for w in words[0::2]])
    return out


def test_entries_are_written_in_one_place_in_the_schema() -> None:
    found = _xadd_fields(ENTRIES)
    assert len(found) == 3
    for fields in found:
        assert tuple(fields[:5]) == ENTRY_FIELDS and fields[5:] in ([], [RELEASED_FIELD]), fields
    assert "local function add_entry(stream, maxlen, t, k, id, b, n, r)" in ENTRIES


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_script_writes_entries_through_add_entry(name: str) -> None:
    source = WRITERS[name]
    assert "-- include: delivery/entries.lua" in source, name
    own = source.split("local function partition_of", 1)[-1]  # assembled: what comes after entries.lua
    assert "add_entry(" in own and "'XADD'" not in own, name


@pytest.mark.parametrize("name", ["delivery/outcome.lua", "MOVE_DUE"])
def test_scripts_that_read_parked_deliveries_read_the_schema(name: str) -> None:
    """Retried and held deliveries are JSON of the same fields (Delivery.to_json): these scripts read them."""
    read = set(re.findall(r"\bd\.(\w+)\b", LUA[name]))
    assert read <= {*ENTRY_FIELDS, "h"} and {"t", "k", "id", "b", "n"} <= read


def test_hold_reads_only_the_hold_time() -> None:
    assert set(re.findall(r"\bnxt\.(\w+)\b", HOLD.script)) == {"h"}


def test_the_schema_round_trips() -> None:
    assert tuple(D.fields()) == ENTRY_FIELDS
    assert Delivery.from_fields(D.fields()) == D
    assert Delivery.from_fields({k.encode(): str(v).encode() if k != "b" else v for k, v in D.fields().items()}) == D
    assert Delivery.from_json(D.to_json()) == D


def _human(source: str, what: str) -> list[int]:
    """The numbers the human comment lists after `-- KEYS  ` / `-- ARGV  ` (up to the next section)."""
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f"-- {what}  "))
    text = [lines[start][len(f"-- {what}"):]]
    for line in lines[start + 1:]:
        if not line.startswith("--       "):
            break
        text.append(line)
    return [int(n) for n in re.findall(r"(?:^|\s{2})(\d+) ", " ".join(text))]


@pytest.mark.parametrize("script", [OUTCOME, HOLD])
def test_the_human_comments_number_what_the_header_names(script: scripts.Script) -> None:
    assert _human(script.script, "KEYS") == list(range(1, len(script.keys) + 1))
    assert _human(script.script, "ARGV") == list(range(1, len(script.args) + 1))


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_outcome_call_matches_its_header(keys: Keys) -> None:
    call = outcome_call(keys, 5, "pumps", "1-0", D, Outcome(OutcomeName.RETRY, due_ms=9), "device", Limits(), 1000)
    assert len(call.keys) == len(OUTCOME.keys) == 12 and len(call.args) == len(OUTCOME.args) == 19
    k = call.named()
    assert k["stream"] == keys.delivery_stream(5) and k["attempts"] == keys.attempts(D.target, 5)
    assert k["retry"] == keys.delivery_retry(5) and k["hold"] == keys.delivery_hold(D.target, D.key)
    assert k["state"] == keys.delivery_state(D.target, 5) and k["stats"] == keys.callback_stats_in("device", 5)
    assert k["metrics"] == keys.metrics_in(5) and k["dead_index"] == keys.dead_index(D.target, 5)
    assert (k["group"], k["entry_id"], k["outcome"], k["due"], k["target"], k["count_stats"]) == (
        "pumps", "1-0", "retry", 9, D.target, "1")
    assert call.packed().startswith(b"*") and OUTCOME.sha.encode() in call.packed()
    merged = outcomes([call, call])
    assert merged.keys == call.keys * 2 and merged.args == call.args * 2


def test_outcome_on_one_redis_keeps_the_old_keys() -> None:
    route = Delivery("route:4", "SN1", "m:1:route:4", b"{}", 0)
    call = outcome_call(ONE, 2, "pumps", "1-0", route, Outcome(OutcomeName.SUCCESS), None, Limits(), 1)
    assert call.keys == ("iot:dq:2", "iot:route:4", "iot:attempts:route:4", "iot:dq:retry", "iot:dq:hold:route:4:SN1",
                         "iot:dead:route:4", "", "iot:dq:holds:2", "iot:dq:held:route:4", "iot:dq:state:route:4",
                         "iot:dead-idx:route:4", "iot:metrics")
    assert call.args[18] == "0"


@pytest.mark.parametrize("keys", [ONE, CLUSTER])
def test_hold_call_matches_its_header(keys: Keys) -> None:
    call = hold_call(keys, 5, "pumps", "1-0", D, Limits(max_held=7), 1000)
    assert len(call.keys) == len(HOLD.keys) and len(call.args) == len(HOLD.args)
    n = call.named()
    assert n["hold"] == keys.delivery_hold(D.target, D.key) and n["stream"] == keys.delivery_stream(5)
    assert n["max_held"] == 7 and n["target"] == D.target and n["delivery_id"] == D.id


def test_move_due_and_replay_calls() -> None:
    one = move_due_call(ONE, 3, 100, 500, 9)
    assert one.keys == ("iot:dq:retry",) and one.args == (100, 500, "iot:dq:", 4, 9)
    p = CLUSTER.stream_partition("SN1")
    on = move_due_call(CLUSTER, p, 100, 500, 9)
    assert on.keys == (CLUSTER.delivery_retry(p), CLUSTER.delivery_stream(p)) and on.args == (100, 500, "", 0, 9)
    r1 = dead_letters.replay_call(ONE, "callback:1", 0, 4, 9, None, 500, 10)
    assert r1.keys == ("iot:dead:callback:1", "iot:dead-idx:callback:1")
    assert r1.args == ("iot:dq:", 4, "callback:1", 9, "first", 500, 10)
    r2 = dead_letters.replay_call(CLUSTER, "callback:1", p, 48, 9, ["a", "b"], 500, 0)
    assert r2.keys[2] == CLUSTER.delivery_stream(p) and r2.args == ("", 0, "callback:1", 9, "ids", 2, 0, "a", "b")


def test_every_cluster_call_is_single_slot() -> None:
    p = CLUSTER.stream_partition(D.key)
    calls = [outcome_call(CLUSTER, p, "g", "1-0", D, Outcome(OutcomeName.DEAD), "device", Limits(), 1),
             outcome_call(CLUSTER, p, "g", "1-0", Delivery("route:1", D.key, "m:1:route:1", b"{}", 0),
                          Outcome(OutcomeName.SUCCESS), None, Limits(), 1),
             hold_call(CLUSTER, p, "g", "1-0", D, Limits(), 1), move_due_call(CLUSTER, p, 1, 1, 1),
             dead_letters.replay_call(CLUSTER, D.target, p, 48, 1, None, 1, 0)]
    for call in calls:
        assert all(call.keys) and len({key_slot(k.encode()) for k in call.keys}) == 1, call.keys
    assert key_slot(CLUSTER.delivery_lease(p).encode()) == key_slot(CLUSTER.delivery_stream(p).encode())
    assert key_slot(CLUSTER.delivery_holds(p).encode()) == key_slot(CLUSTER.delivery_hold_prefix(p).encode() + b"x")


def test_delivery_keys_on_the_cluster() -> None:
    k, t = CLUSTER, CLUSTER.shard_tag(7)
    assert k.delivery_stream(7) == f"iot:{t}:dq:7" and k.delivery_retry(7) == f"iot:{t}:dq:retry"
    assert k.delivery_hold("callback:1", "SN1") == f"iot:{k.tag('SN1')}:dq:hold:callback:1:SN1"
    assert k.delivery_holds(7) == f"iot:{t}:dq:holds:7" and k.delivery_lease(7) == f"iot:{t}:dq:lease:7"
    assert k.delivery_state("route:4", 7) == f"iot:{t}:dq:state:route:4" == k.delivery_counts("route:4", 7)
    assert k.attempts("route:4", 7) == f"iot:{t}:attempts:route:4" and k.dead("route:4", 7) == f"iot:{t}:dead:route:4"
    assert k.dead_index("route:4", 7) == f"iot:{t}:dead-idx:route:4"
    assert k.delivery_held("route:4", 7) == f"iot:{t}:dq:held:route:4" and k.metrics_in(7) == f"iot:{t}:metrics"
    assert k.callbacks_enabled_in("device", 7) == f"iot:{t}:callbacks:enabled:device"
    assert k.callback_stats_in("device", 7) == f"iot:{t}:callbacks:stats:device"
    assert k.callbacks_enabled_of("device") == "iot:{tgt}:callbacks:enabled:device"
    assert k.target("callback", 1) == "iot:{tgt}:callback:1" and k.targets("route") == "iot:{tgt}:routes"
    assert k.target_seq("route") == "iot:{tgt}:seq:route" and k.routes_enabled() == "iot:{tgt}:routes:enabled"
    assert k.routes_version() == "iot:{tgt}:routes:version" and k.routes_channel() == "iot:{tgt}:routes:changed"


def test_one_redis_has_one_engine_partition() -> None:
    k = ONE
    assert k.callbacks_enabled_in("device", 3) == k.callbacks_enabled_of("device")
    assert k.callback_stats_in("device", 3) == k.callback_stats("device") and k.metrics_in(3) == k.metrics()
    assert k.delivery_counts("callback:2", 3) == k.target("callback", 2)
    for p in (0, 3):
        assert k.delivery_state("callback:2", p) == "iot:dq:state:callback:2" == k.delivery_state("callback:2")
        assert k.dead("callback:2", p) == "iot:dead:callback:2" and k.delivery_retry(p) == "iot:dq:retry"
    assert k.delivery_hold_prefix(2) + "callback:1:SN1" == k.delivery_hold("callback:1", "SN1")


def test_caps_split_over_partitions() -> None:
    limits = Limits(max_held=10_000, max_dead=100)
    assert limits.per_partition(1) is limits
    split = limits.per_partition(48)
    assert (split.max_held, split.max_dead) == (209, 3) and split.breaker_threshold == limits.breaker_threshold


def test_health_merges_partitions() -> None:
    merged = merged_state([{"held": "2", "failures": "1"}, {},
                           {"breaker": "open", "openedAt": "50", "probeAt": "900", "failures": "4", "deadDropped": "1"},
                           {"breaker": "open", "openedAt": "40", "probeAt": "950", "held": "1"}])
    assert merged == {"held": "3", "deadDropped": "1", "failures": "5", "breaker": "open", "openedAt": "40",
                      "probeAt": "900"}
    assert merged_state([{"failures": "2"}, {}]) == {"failures": "2"}
