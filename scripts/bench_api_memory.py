"""The API's memory under sustained ingest: `adapter api` (the tree of the working directory) driven with the
ingest benchmark's event mix, `--rounds` rounds of `--seconds` each on 32 connections, its resident set (VmRSS)
printed after each. What it shows: whether memory grows with the requests served (the garbage collector's schedule,
adapter/collector.py, collects cycles later than CPython's default).

    .venv/bin/python scripts/bench_api_memory.py [--rounds 4] [--seconds 8] [--redis-url redis://127.0.0.1:6379/10]

The Redis database is flushed at the start and the end: give it one of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import redis
from bench_ingest import TOKEN, event_mix, start_server, wait_up
from loadgen import run_load

from adapter_devtools.httpwire import build_request


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--port", type=int, default=18980)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = p.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    env = dict(os.environ, ADAPTER_REDIS_URL=args.redis_url, ADAPTER_INGEST_TOKEN=TOKEN,
               ADAPTER_ADMIN_PASSWORD="bench-password")
    proc = start_server("adapter api", args.port, env)
    try:
        wait_up(args.port, "/")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        requests = [build_request("127.0.0.1", "/emqx/events", b, headers) for b in event_mix(args.devices)]
        print(f"adapter api ({os.getcwd()}): {rss_mb(proc.pid)} MB at start")
        served = 0
        for _ in range(args.rounds):
            result = asyncio.run(run_load("127.0.0.1", args.port, requests, 32, args.seconds, warmup=0))
            served += result.requests
            print(f"  after {served:,} requests ({result.rate:,.0f}/s this round): {rss_mb(proc.pid)} MB")
    finally:
        proc.terminate()
        proc.wait(10)
        r.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
