"""What Redis spends per script call of the hot paths: the ingest's calls (a connect, a DMA heartbeat routed and
not) and a delivery's success outcome, with the real scripts and arguments (adapter.ingest.plan,
adapter.delivery.model), sent in pipelines as the batchers send them. Prints, per call, the time Redis spent
running it (INFO commandstats, EVALSHA usec) and its CPU (INFO cpu, the network and event loop included), beside
an empty script given the same arguments.

    .venv/bin/python scripts/bench_redis_scripts.py [--calls 20000] [--redis-url redis://127.0.0.1:6379/10]

The Redis database is flushed at the start and the end: give it one of its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from adapter.commands.rules import CommandCalls
from adapter.delivery.model import OUTCOME, Delivery, Limits, Outcome, OutcomeName, outcome_call, outcomes
from adapter.devices.calls import SCRIPTS, DeviceCommands
from adapter.http.envelope import decode_json
from adapter.ingest.plan import plan
from adapter.protocol.events import MessagePublished, parse_event
from adapter.settings import Settings
from adapter.store.keys import Keys
from adapter.targets.forwarding import FORWARD, forward_of
from adapter.targets.route_table import RouteInfo
from adapter_devtools.chaos.load import Device

NOW_MS = 1_700_000_000_000
GROUP = "pumps"


def usec(r: redis.Redis) -> float:
    return float(r.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0))


def cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(r: redis.Redis, name: str, commands: Sequence[bytes], per_call: int = 1, batch: int = 16) -> None:
    """Send packed `commands` in pipelines of `batch`; print Redis's time per call (each carrying `per_call`)."""
    conn = r.connection_pool.get_connection()
    try:
        u0, c0 = usec(r), cpu(r)
        for i in range(0, len(commands), batch):
            chunk = commands[i:i + batch]
            conn.send_packed_command([b"".join(chunk)])
            for _ in chunk:
                conn.read_response()
        u1, c1 = usec(r), cpu(r)
    finally:
        r.connection_pool.release(conn)
    n = len(commands) * per_call
    what = f"{name} ({per_call} to a call)" if per_call > 1 else name
    print(f"  {what:44} {(u1 - u0) / n:6.1f} µs running, {(c1 - c0) / n * 1e6:6.1f} µs of Redis CPU, per item")


def packed(call: Any) -> bytes:
    return bytes(call) if isinstance(call, bytes | bytearray) else call.packed()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = p.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    keys = Keys.of(Settings())
    for script in [*SCRIPTS, FORWARD]:
        r.script_load(script.script)
    cmd, ctl = DeviceCommands(keys), CommandCalls(keys)
    route = [RouteInfo(1, "dma/report/+/heartbeat")]
    devices = [Device(f"BENCH{i:06d}", i) for i in range(args.calls)]

    def calls_of(bodies: Sequence[dict[str, Any]], routed: bool = False) -> list[bytes]:
        out = []
        for body in bodies:
            ev = parse_event(decode_json(orjson.dumps(body)))
            fwd = forward_of(ev, route, keys) if routed and isinstance(ev, MessagePublished) else None
            out += [packed(c) for c in plan(ev, cmd, NOW_MS, ctl, fwd).commands]
        return out

    try:
        print(f"{args.calls} calls each, pipelines of 16, {args.redis_url}")
        setup = calls_of([b for d in devices for b in (d.connect(), d.subscribe(), d.disconnect())])
        measure(r, "setup: connect, subscribe, disconnect", setup)
        measure(r, "connect (no callback enabled)", calls_of([d.connect() for d in devices]))
        heartbeats = [d.message()[1] for d in devices]
        measure(r, "DMA heartbeat, not routed", calls_of(heartbeats))
        routed = calls_of([{**h, "id": h["id"][:-1] + "R"} for h in heartbeats], routed=True)
        measure(r, "DMA heartbeat, one route", routed)
        empty = r.script_load("return 0")
        old_sha = routed[0].split(b"\r\n")[4]
        measure(r, "an empty script, the routed call's arguments",
                [c.replace(old_sha, empty.encode(), 1) for c in routed])
        # a success outcome per delivery: entries written and read as the pump reads them first
        r.flushdb()  # the routed calls' entries out of the way
        stream, target = keys.delivery_stream(0), "route:1"
        r.xgroup_create(stream, GROUP, id="0", mkstream=True)
        pipe = r.pipeline(transaction=False)
        deliveries = [Delivery(target, d.sn, f"m:{i:028X}:route:1", orjson.dumps(h), 0)
                      for i, (d, h) in enumerate(zip(devices, heartbeats, strict=True))]
        for d in deliveries:
            pipe.xadd(stream, d.fields())
        ids = [i.decode() for i in pipe.execute()]
        r.xreadgroup(GROUP, "bench", {stream: ">"}, count=len(ids))
        done = [outcome_call(keys, 0, GROUP, entry, d, Outcome(OutcomeName.SUCCESS, status=200, duration_ms=1.0),
                             None, Limits(), NOW_MS) for entry, d in zip(ids, deliveries, strict=True)]
        r.script_load(OUTCOME.script)
        measure(r, "success outcome", [outcomes(done[i:i + 8]).packed() for i in range(0, len(done), 8)], per_call=8)
        left = r.xpending(stream, GROUP)["pending"]
        if left:
            print(f"  (outcomes left {left} entries pending: the figure is not a success outcome's)")
    finally:
        r.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
