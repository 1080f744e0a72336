"""guard.lua (a reconciliation's correction runs only on the state its decision saw) compares the fields
reconcile.STATE names, in that order, after device.lua's own ARGV (1..6)."""

from __future__ import annotations

import re

from adapter.devices import reconcile
from adapter.devices.calls import DEVICE_PRESENCE, GUARDED_PRESENCE, device_call
from adapter.protocol.events import Connected
from adapter.store import resp, scripts
from adapter.store.keys import Keys


def test_the_guard_reads_the_fields_of_state_in_order() -> None:
    lua = scripts.source("devices/guard.lua")
    [fields] = re.findall(r"HMGET', KEYS\[9\], (.*)\)", lua)
    assert tuple(f.strip().strip("'") for f in fields.split(",")) == reconcile.STATE
    assert f"for i = 1, {len(reconcile.STATE)} do" in lua
    seen = [f.name for f in GUARDED_PRESENCE.args[len(DEVICE_PRESENCE.args):]]
    assert seen == [f"seen_{name}" for name in reconcile.STATE]
    assert "local expected = {" + ", ".join(f"ARGV[{7 + i}]" for i in range(len(seen))) + "}" in lua


def test_a_guarded_call_appends_the_seen_state_to_the_device_call() -> None:
    keys = Keys("iot")
    ev = Connected("SN1", 1000)
    call = device_call(keys, ev)
    assert len(call.args) == 6
    words = resp.unpack(reconcile.guarded_call(keys, ev, ["1", None, "5", None, "3"]))
    assert words[:3] == [b"EVALSHA", GUARDED_PRESENCE.sha.encode(), str(len(call.keys)).encode()]
    assert words[3:3 + len(call.keys) + 6] == [str(w).encode() for w in (*call.keys, *call.args)]
    assert words[-5:] == [b"1", b"\0", b"5", b"\0", b"3"]
