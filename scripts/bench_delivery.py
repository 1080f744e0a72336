"""Delivery throughput and latency: a status-change storm through the real engine (2 `adapter worker`
processes) to a local receiver, and in the same run a raw aiohttp loop (same concurrency, same receiver).

    .venv/bin/python scripts/bench_delivery.py [--transitions 20000] [--callbacks 1] [--workers 2]

Transitions are written straight into Redis by the ingest's own script (so the ingest's HTTP cost is not
in the figure); latency is from that write to the receiver reading the request. The workers' CPU per delivery
(user + system, from /proc) is the figure to compare two trees by on a shared machine. Another tree's engine:
run this script from that tree's directory with that tree's venv (its workers are `python -m adapter worker`
there).
Goals (delivery issue): ≥ 3,000 signed deliveries/s and ≥ 0.5× the baseline; p50 ≤ 50 ms, p99 ≤ 250 ms at
moderate load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import redis

from adapter.delivery.signing import new_secret
from adapter.devices.calls import SCRIPTS, DeviceCommands
from adapter.protocol.events import Connected, Disconnected
from adapter.store.keys import Keys


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    """scripts/bench_receiver.py under uvicorn, in its own process."""
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "bench_receiver:app", "--port", str(port),
                             "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools",
                             "--backlog", "4096"], cwd=Path(__file__).resolve().parent)


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def receipts(url: str) -> dict[str, float]:
    return httpx.get(url, timeout=30).json()


def prepare(r: redis.Redis, keys: Keys, n: int, callbacks: int, url: str) -> None:
    r.flushdb()
    with r.pipeline(transaction=False) as pipe:
        for i in range(n):
            sn = f"STORM{i:06d}"
            pipe.hset(keys.client(sn), mapping={"device": "1", "online": "0", "version": "0"})
            pipe.zadd(keys.devices(), {sn: 0})
        pipe.execute()
    for cb in range(1, callbacks + 1):
        r.hset(keys.target("callback", cb), mapping={"type": "device", "url": f"{url}/cb{cb}", "enabled": "1",
                                                     "secret": new_secret(), "createTime": 1, "updateTime": 1})
        r.zadd(keys.targets("callback"), {str(cb): cb})
        r.sadd(keys.callbacks_enabled_of("device"), str(cb))


def storm(r: redis.Redis, cmd: DeviceCommands, sns: list[str], at: int, online: bool,
          pace: float | None = None) -> dict[str, float]:
    """Write one transition per sn; answer sn -> write time. With `pace` (per second), spread them out."""
    for script in SCRIPTS:
        r.script_load(script.script)
    written: dict[str, float] = {}
    batch = 200 if pace is None else max(1, int(pace / 100))
    start = time.time()
    for i in range(0, len(sns), batch):
        chunk = sns[i:i + batch]
        packed = [cmd.presence(Connected(sn, at) if online else Disconnected(sn, at + 1, "normal", at))
                  for sn in chunk]
        conn = r.connection_pool.get_connection()
        try:
            conn.send_packed_command([b"".join(packed)])
            for _ in packed:
                conn.read_response()
        finally:
            r.connection_pool.release(conn)
        now = time.time()
        for sn in chunk:
            written[sn] = now
        if pace is not None:
            target = start + (i + len(chunk)) / pace
            time.sleep(max(0.0, target - time.time()))
    return written


def latency(written: dict[str, float], seen: dict[str, float]) -> list[float]:
    out = []
    for delivery_id, at in seen.items():
        sn = delivery_id.split(":")[1]
        if sn in written:
            out.append((at - written[sn]) * 1000)
    return sorted(out)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far (/proc/<pid>/stat): contention on a shared machine
    stretches wall time far more than it inflates this."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """Stop the processes a bench started: SIGTERM, then SIGKILL for any still running `timeout` s later (a worker
    left running would pump the next run's Redis with its own code, and its deliveries would count as the next
    run's)."""
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_all(url: str, expected: int, timeout: float) -> dict[str, float]:
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        seen.update(receipts(url))
    return seen


async def baseline(url: str, n: int, concurrency: int, body: bytes) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        count = 0

        async def one_worker() -> None:
            nonlocal count
            while count < n:
                count += 1
                async with session.post(url, data=body, headers={"content-type": "application/json",
                                                                 "webhook-id": f"base:{count}"}) as resp:
                    await resp.read()

        t0 = time.perf_counter()
        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--transitions", type=int, default=20000)
    p.add_argument("--callbacks", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=64, help="ADAPTER_DELIVERY_CONCURRENCY per worker")
    p.add_argument("--moderate", type=float, default=500, help="transitions/s of the latency phase")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    p.add_argument("--port", type=int, default=18995)
    args = p.parse_args()

    keys = Keys("iot")
    r = redis.Redis.from_url(args.redis_url)
    url = f"http://127.0.0.1:{args.port}"
    receiver = start_receiver(args.port)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_up(url)
        prepare(r, keys, args.transitions, args.callbacks, url)
        env = dict(os.environ, ADAPTER_REDIS_URL=args.redis_url, ADAPTER_ALLOW_PRIVATE_URLS="true",
                   ADAPTER_DELIVERY_CONCURRENCY=str(args.concurrency))
        workers = [subprocess.Popen([sys.executable, "-m", "adapter", "worker"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(args.workers)]
        time.sleep(3)  # leases settle between the workers
        cmd = DeviceCommands(keys)
        sns = [f"STORM{i:06d}" for i in range(args.transitions)]
        expected = args.transitions * args.callbacks

        cpu0 = cpu_s([w.pid for w in workers])
        t0 = time.time()
        written = storm(r, cmd, sns, 1_700_000_000_000, online=True)
        seen = wait_all(url, expected, timeout=300)
        cpu = cpu_s([w.pid for w in workers]) - cpu0
        took = max(seen.values()) - t0 if seen else float("nan")
        lat = latency(written, seen)
        rate = len(seen) / took
        print(f"storm: {args.transitions} transitions x {args.callbacks} callback(s) = {expected} deliveries, "
              f"{args.workers} workers x concurrency {args.concurrency}")
        print(f"  delivered {len(seen)} in {took:.2f} s = {rate:,.0f} signed deliveries/s; "
              f"write-to-receipt p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms (under the storm)")
        print(f"  workers' CPU: {cpu:.2f} s = {cpu / max(1, len(seen)) * 1e6:.0f} µs per delivery")

        moderate_n = min(args.transitions, int(args.moderate * 5))
        written = storm(r, cmd, sns[:moderate_n], 1_700_000_000_000, online=False, pace=args.moderate)
        seen = wait_all(url, moderate_n * args.callbacks, timeout=120)
        lat = latency(written, seen)
        print(f"moderate load: {args.moderate:.0f} transitions/s for {moderate_n / args.moderate:.0f} s: "
              f"p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, mean {statistics.fmean(lat):.1f} ms")

        body = b'{"type":"device","sn":"STORM000001","online":true,"time":1700000000,"version":2}'
        base = asyncio.run(baseline(f"{url}/base", expected, args.concurrency * args.workers, body))
        receipts(url)
        print(f"baseline: raw aiohttp loop, concurrency {args.concurrency * args.workers}: {base:,.0f} POSTs/s")
        print(f"ratio engine/baseline: {rate / base:.2f}   (goals: ≥ 3,000/s and ≥ 0.5)")
    finally:
        stop([*workers, receiver])
        r.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
