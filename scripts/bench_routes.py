"""Message routes: ingest throughput of `POST /emqx/events` with 0, 100 and 10,000 routes (every 100th a
wildcard: 100 of 10,000), one uvicorn process, the real Redis, the same event mix as bench_ingest.

    .venv/bin/python scripts/bench_routes.py [--counts 0,100,10000] [--connections 32] [--seconds 10] [--fresh N]

Routes are created through `RouteStore` before the server starts (so its route table loads them at start).
What they match in the mix (2,000 devices x 10 events, 3 of them heartbeats, 1 a `sys` report):
- wildcard 0: `dma/report/+/heartbeat` (30 % of the events);
- wildcard j >= 1: `dma/report/BENCH{j:06d}/+` (the reports of device j);
- exact route i: `dma/report/BENCH{i:06d}/sys` (device i's `sys` report).
So matched messages also cost their delivery XADDs: that is part of the routing cost. No delivery pump runs;
the deliveries stay queued and are counted ("queued"), and the database is flushed after each count.

By default the 18,000 events are sent again and again, as bench_ingest does: after the first pass every
message is one EMQX already delivered, so Redis only finds its seen key and writes no delivery, and every topic
is one the route table has answered before. `--fresh N` sends N sessions of the fleet instead (new message
ids and later times each; N x 18,000 distinct events, enough that none repeats within the run when N is about
2 x the events per second / 1,000): every matched message then writes its deliveries, as in production.

It also times, in this process, the table load and `match` + `forward_of` per event of the mix.

Goal (routes issue): 10,000 routes cost at most 10 % of the throughput with 0 routes (ratio >= 0.9).
Not here yet: publish-to-forward latency p50/p99 through the dev broker (goal p99 <= 250 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))
from bench_ingest import TOKEN, event_mix, start_server, wait_up  # noqa: E402
from loadgen import Result, run_load  # noqa: E402

from adapter.protocol.events import MessagePublished, parse_event  # noqa: E402
from adapter.store.keys import Keys  # noqa: E402
from adapter.targets.forwarding import forward_of  # noqa: E402
from adapter.targets.route_table import RouteTable  # noqa: E402
from adapter.targets.routes import RouteStore  # noqa: E402
from adapter_devtools.httpwire import build_request  # noqa: E402

TARGET = "http://127.0.0.1:9/bench"  # the discard port: nothing is sent anyway (no pump runs)
WILDCARD_EVERY = 100


def route_topic(i: int) -> str:
    if i % WILDCARD_EVERY:
        return f"dma/report/BENCH{i:06d}/sys"
    j = i // WILDCARD_EVERY
    return "dma/report/+/heartbeat" if j == 0 else f"dma/report/BENCH{j:06d}/+"


async def create_routes(url: str, keys: Keys, count: int) -> float:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = RouteStore(client, keys)
    started = time.perf_counter()
    try:
        for first in range(0, count, 50):
            await asyncio.gather(*(store.create(f"bench {i}", route_topic(i), TARGET)
                                   for i in range(first, min(first + 50, count))))
    finally:
        await client.aclose()
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def queued(r: redis.Redis, keys: Keys) -> int:
    return sum(int(r.xlen(k)) for k in r.scan_iter(match=keys.delivery_stream_prefix() + "*")
               if r.type(k) == b"stream")


async def match_cost(url: str, keys: Keys, messages: list[MessagePublished], partitions: int) -> str:
    """In this process: the table load, then µs per event for match + forward_of."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    table = RouteTable(keys)
    try:
        started = time.perf_counter()
        await table.refresh(client)
        load_ms = (time.perf_counter() - started) * 1000
    finally:
        await client.aclose()
    times, made = [], 0
    for _ in range(4):  # the first pass finds every topic new to the table; the others are answered again
        made = 0
        started = time.perf_counter()
        for msg in messages:
            matched = table.match(msg.topic)
            fwd = forward_of(msg, matched, keys)
            made += fwd.routes if fwd else 0
        times.append(time.perf_counter() - started)
    cold, warm = (t / len(messages) * 1e6 for t in (times[0], min(times[1:])))
    return (f"table of {len(table)} loaded in {load_ms:.1f} ms; match + pack {cold:.2f} µs per message for new "
            f"topics, {warm:.2f} µs for topics seen before ({made / len(messages):.2f} deliveries per message)")


def measure(port: int, requests: list[bytes], args: argparse.Namespace) -> Result:
    return asyncio.run(run_load("127.0.0.1", port, requests, args.connections, args.seconds))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--counts", default="0,100,10000")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    p.add_argument("--fresh", type=int, default=0, help="sessions of the fleet (distinct events); 0: repeat one")
    args = p.parse_args()

    counts = [int(c) for c in args.counts.split(",")]
    keys = Keys("iot")
    r = redis.Redis.from_url(args.redis_url)
    bodies = [b for r in range(max(args.fresh, 1)) for b in event_mix(args.devices, r)]
    messages = [ev for ev in (parse_event(json.loads(b)) for b in bodies) if isinstance(ev, MessagePublished)]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    requests = [build_request("127.0.0.1", "/emqx/events", b, auth) for b in bodies]
    env = dict(os.environ, ADAPTER_REDIS_URL=args.redis_url, ADAPTER_INGEST_TOKEN=TOKEN,
               ADAPTER_ADMIN_PASSWORD="bench-password", ADAPTER_KEY_PREFIX=keys.prefix,
               ADAPTER_DELIVERY_PARTITIONS=str(args.partitions))

    print(f"{len(bodies)} distinct events ({args.devices} devices x {max(args.fresh, 1)} sessions, "
          f"{len(messages)} message.publish), "
          f"{args.connections} connections, {args.seconds:.0f} s per count, one uvicorn process "
          "(uvloop, httptools)")
    results: dict[int, Result] = {}
    for count in counts:
        r.flushdb()
        took = asyncio.run(create_routes(args.redis_url, keys, count))
        cost = asyncio.run(match_cost(args.redis_url, keys, messages, args.partitions))
        port = free_port()
        proc = start_server("adapter.app:create_app", port, env)
        try:
            wait_up(port, "/")
            results[count] = measure(port, requests, args)
        finally:
            proc.terminate()
            proc.wait(10)
        print(results[count].line(f"{count} routes") + f"   queued {queued(r, keys)}")
        print(f"{'':<22} {count} routes created in {took:.1f} s; in-process: {cost}")
    r.flushdb()
    if 0 in results:
        for count, res in results.items():
            if count:
                ratio = res.rate / results[0].rate
                print(f"ratio {count} routes / 0 routes: {ratio:.2f}   (goal for 10,000: ≥ 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
