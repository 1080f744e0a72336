"""throttle.lua's KEYS/ARGV layout is built in one place (`throttle_call`), pinned here against the script's
header comment (issue 14: named KEYS/ARGV builders)."""

from __future__ import annotations

import re

import pytest

from adapter.auth.throttle import SCRIPT, Bucket, Mode, throttle_call
from adapter.store import scripts

LUA = scripts.source("auth/throttle.lua")
OWN = Bucket("iot:login-fail:pair:bob:10.0.0.1", limit=5, first=2.0, longest=300.0, idle=900.5)
SHARED = Bucket("iot:login-fail:ip:10.0.0.1", limit=50, first=900.0, longest=900.0, idle=900.0)


def test_take_sends_each_bucket_in_order_with_its_limits_in_ms() -> None:
    keys, args = throttle_call(Mode.TAKE, [OWN, SHARED])[1:]
    assert keys == (OWN.key, SHARED.key)  # the identity's own bucket first: `clear` forgets KEYS[1]
    assert args == ("take", 5, 2000, 300000, 900500, 50, 900000, 900000, 900000)


@pytest.mark.parametrize("mode", [Mode.CLEAR, Mode.REFUND])
def test_clear_and_refund_send_only_the_mode(mode: Mode) -> None:
    assert throttle_call(mode, [OWN, SHARED])[1:] == ((OWN.key, SHARED.key), (mode.value,))


def test_layout_matches_the_lua_header() -> None:
    assert [f.name for f in SCRIPT.keys] == ["buckets"] and [f.name for f in SCRIPT.args] == ["mode", "limits"]
    header = "\n".join(line for line in LUA.splitlines() if line.startswith("--"))
    modes = re.search(r"ARGV\s+1 (\w+) \| (\w+) \| (\w+)", header)
    assert modes and set(modes.groups()) == {m.value for m in Mode}
    per_bucket = re.search(r"per bucket: 2 limit\s+3 first lock \(ms\)\s+4 longest lock \(ms\)\s+5 kept while idle",
                           header)
    assert per_bucket, header
    # the script reads bucket i's four values at ARGV[o + 1 .. o + 4], o = 1 + (i - 1) * 4, in one place
    assert "local o = 1 + (i - 1) * 4" in LUA and LUA.count("ARGV[") == 5  # ARGV[1] (the mode) and those four
    assert "tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])" in LUA
    assert all(f"mode == '{m.value}'" in LUA for m in (Mode.CLEAR, Mode.REFUND))
    assert len(OWN.argv()) == 4
