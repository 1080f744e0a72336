"""A reconnect storm end to end (issue 21): N devices reconnect after a broker restart, their `client.connected`
pushes go through `POST /emqx/events` as fast as the ingest takes them (one `adapter api` process), and 2 `adapter
worker` processes deliver one signed device callback each to a fast local receiver. Timed from the first push to
the last callback received, against a raw aiohttp loop (20 concurrent POSTs) to the same receiver in the same run.
`--routes`: the same with N routed messages (`message.publish` on a topic one route matches).

The pusher stands in for EMQX and pushes as EMQX's HTTP connector does with this project's configuration
(adapter/broker/emqx_config.py: 8 connections, requests pipelined on each): 64 in flight, 8 on each of 8
connections (`--pipeline 8`); `--pipeline 0` sends them on 64 connections one at a time instead.

    .venv/bin/python scripts/bench_storm.py [--devices 10000] [--routes] [--pipeline 8]
                                            [--redis-url redis://127.0.0.1:6379/10]

The Redis database is flushed at the start and the end: give it one of its own. Prints deliveries/s, the baseline,
their ratio, the workers' CPU per delivery, the API's CPU per event, Redis calls per delivery (INFO commandstats,
by command) and the push-to-callback latency (p50, p99). Goals (issue 21): ratio ≥ 0.5, worker CPU ≤ 400 µs and
≤ 1.5 Redis calls per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import httpx
import orjson
import redis
import yarl
from aiohttp.resolver import ThreadedResolver
from bench_delivery import baseline, cpu_s, pct, start_receiver, stop, wait_all, wait_up

from adapter.delivery.http1 import Http1Client
from adapter_devtools.chaos.load import Device
from adapter_devtools.httpwire import build_request, read_answer

TOKEN = "bench-ingest-token"
ADMIN_PASSWORD = "bench-admin-password"
TOPIC = "dma/report/+/heartbeat"


def start_api(redis_url: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ADAPTER_REDIS_URL=redis_url, ADAPTER_INGEST_TOKEN=TOKEN,
               ADAPTER_ADMIN_PASSWORD=ADMIN_PASSWORD, ADAPTER_ALLOW_PRIVATE_URLS="true",
               ADAPTER_EMQX_API_URL="http://127.0.0.1:9/api/v5")
    return subprocess.Popen([sys.executable, "-m", "adapter", "api", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_workers(redis_url: str, n: int) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, ADAPTER_REDIS_URL=redis_url, ADAPTER_ALLOW_PRIVATE_URLS="true",
               ADAPTER_EMQX_API_URL="http://127.0.0.1:9/api/v5")
    return [subprocess.Popen([sys.executable, "-m", "adapter", "worker"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(n)]


async def push(api: str, bodies: list[tuple[str, bytes]], concurrency: int) -> dict[str, float]:
    """POST every body (key, JSON) to the ingest, `concurrency` at a time, each again on a non-200 answer; answers
    key -> the time its first POST was sent. The pusher stands in for EMQX, which runs on machines of its own: it
    is the lean HTTP/1.1 client of the delivery engine (adapter/delivery/http1.py), so that as little of this
    machine's CPU as can be goes to it (aiohttp costs ~100 µs a request here)."""
    sent: dict[str, float] = {}
    queue = list(reversed(bodies))
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    url = yarl.URL(f"{api}/emqx/events")
    client = Http1Client(ThreadedResolver(), keep=concurrency, user_agent="bench-storm")

    async def one() -> None:
        while queue:
            key, body = queue.pop()
            sent.setdefault(key, time.time())
            while (await client.post(url, body, headers, 30)).status != 200:
                await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(one() for _ in range(concurrency)))
    finally:
        await client.aclose()
    return sent


async def push_pipelined(api: str, bodies: list[tuple[str, bytes]], connections: int, depth: int) -> dict[str, float]:
    """`push` in EMQX's shape: `connections` connections, `depth` requests pipelined on each (its connector's
    `pool_size` and `enable_pipelining`), a refused event sent again later; raw sockets (scripts/loadgen.py's way)."""
    sent: dict[str, float] = {}
    queue = deque(bodies)
    host, port = yarl.URL(api).host or "127.0.0.1", yarl.URL(api).port
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        flying: deque[tuple[str, bytes]] = deque()
        try:
            while queue or flying:
                while queue and len(flying) < depth:
                    key, body = queue.popleft()
                    sent.setdefault(key, time.time())
                    writer.write(build_request(host, "/emqx/events", body, headers))
                    flying.append((key, body))
                status = await read_answer(reader)
                key, body = flying.popleft()
                if status != 200:
                    queue.append((key, body))
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return sent


def create_target(api: str, url: str, routes: bool) -> None:
    login = httpx.post(f"{api}/iot/api/v1/auth/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    auth = {"Authorization": f"Bearer {login.json()['data']['token']}"}
    if routes:
        r = httpx.post(f"{api}/iot/api/v1/msgroute/configs", headers=auth,
                       json={"topic": TOPIC, "name": "bench", "url": f"{url}/route"})
    else:
        r = httpx.post(f"{api}/iot/api/v1/monitor/devices/callbacks", headers=auth,
                       json={"type": "device", "url": f"{url}/callback"})
    r.raise_for_status()


class Monitor:
    """Counts the commands clients send Redis (MONITOR, leaving out what scripts call: `[0 lua]`), by name, in a
    thread of its own. MONITOR costs Redis a little per command: `--monitor` runs are for the counts."""

    def __init__(self, url: str) -> None:
        self.conn = redis.Redis.from_url(url).connection_pool.get_connection()
        self.counts: dict[str, int] = {}
        self.on = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> Monitor:
        self.conn.send_command("MONITOR")
        self.conn.read_response()
        self.thread.start()
        return self

    def _read(self) -> None:
        while True:
            try:
                line = self.conn.read_response()
            except (redis.exceptions.ConnectionError, OSError):
                return
            if not self.on.is_set() or not isinstance(line, bytes | str):
                continue
            text = line.decode() if isinstance(line, bytes) else line
            if " lua]" in text:
                continue
            name = text.split('"', 2)[1].lower() if '"' in text else "?"
            self.counts[name] = self.counts.get(name, 0) + 1

    def stop(self) -> dict[str, int]:
        self.on.clear()
        self.conn.disconnect()
        return dict(self.counts)


def profile(into: str | None, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if into is None or spy is None:
        return []
    Path(into).mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--format", "raw", "--rate", "200", "--pid", str(pid), "-o",
                              f"{into}/{name}.txt"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in pids.items()]


def calls(r: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in r.info("commandstats").items()}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=10000)
    p.add_argument("--routes", action="store_true", help="routed messages instead of reconnects")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=64, help="concurrent ingest POSTs")
    p.add_argument("--pipeline", type=int, default=8, metavar="N",
                   help="N requests pipelined on each of concurrency/N connections: EMQX's shape, as this project "
                        "configures its HTTP connector (pool_size 8, enable_pipelining 100); 0: one request on each "
                        "of `concurrency` connections")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    p.add_argument("--port", type=int, default=18996)
    p.add_argument("--api-port", type=int, default=18997)
    p.add_argument("--monitor", action="store_true", help="count the commands clients send (MONITOR: a little slower)")
    p.add_argument("--profile", metavar="DIR", help="py-spy (if installed) samples the API and the workers during the "
                                                    "storm; collapsed stacks go to DIR")
    args = p.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    url, api = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.api_port}"
    procs = [start_receiver(args.port), start_api(args.redis_url, args.api_port)]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_up(url)
        wait_up(f"{api}/healthz")
        # the workers first: their periodic jobs' first runs (retention, reconcile: a pass over every device) end
        # before the storm, which they would otherwise share the workers' CPU and Redis with
        workers = start_workers(args.redis_url, args.workers)
        devices = [Device(f"STORM{i:06d}", i) for i in range(args.devices)]
        # the fleet as it was before the broker restarted: known devices, offline (no target yet: no callbacks)
        setup = [(d.sn, orjson.dumps(body)) for d in devices for body in (d.connect(), d.subscribe(), d.disconnect())]
        asyncio.run(push(api, setup, args.concurrency))
        create_target(api, url, args.routes)  # through the v1 API: the API's route table follows it at once
        time.sleep(3)  # the workers' pumps share the partitions; the API's route table follows the new route
        if args.routes:
            storm = [(mid, orjson.dumps(body)) for d in devices for mid, body in [d.message()]]
        else:
            storm = [(d.sn, orjson.dumps(d.connect())) for d in devices]
        pids = [w.pid for w in workers]
        monitor = Monitor(args.redis_url).start() if args.monitor else None
        spies = profile(args.profile, {"api": procs[1].pid, **{f"worker-{i}": w.pid for i, w in enumerate(workers)}})
        redis_pid = int(r.info("server")["process_id"])
        others = {"pusher (this process)": os.getpid(), "receiver": procs[0].pid, "redis": redis_pid}
        others0 = {name: cpu_s([pid]) for name, pid in others.items()}
        cpu0, api0, calls0 = cpu_s(pids), cpu_s([procs[1].pid]), calls(r)
        if monitor is not None:
            monitor.on.set()
        t0 = time.time()
        if args.pipeline:
            sent = asyncio.run(push_pipelined(api, storm, args.concurrency // args.pipeline, args.pipeline))
        else:
            sent = asyncio.run(push(api, storm, args.concurrency))
        pushed = time.time() - t0
        seen = wait_all(url, len(storm), timeout=300)
        took = max(seen.values()) - t0 if seen else float("nan")
        cpu, api_cpu = cpu_s(pids) - cpu0, cpu_s([procs[1].pid]) - api0
        spent = {name: cpu_s([pid]) - others0[name] for name, pid in others.items()}
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        used = {k: v - calls0.get(k, 0) for k, v in calls(r).items() if v - calls0.get(k, 0) > 0}
        sent_calls = monitor.stop() if monitor is not None else None
        n = len(seen)
        lat = sorted((at - sent[_key(delivery_id, args.routes)]) * 1000 for delivery_id, at in seen.items()
                     if _key(delivery_id, args.routes) in sent)
        rate = n / took
        base0 = {name: cpu_s([pid]) for name, pid in others.items()}
        base = asyncio.run(baseline(f"{url}/base", len(storm), 20, b'{"type":"device","sn":"STORM000001"}'))
        base_cpu = {name: cpu_s([pid]) - base0[name] for name, pid in others.items() if name != "redis"}
        what = "routed messages" if args.routes else "reconnects"
        shape = f"{args.concurrency // args.pipeline} connections × {args.pipeline} pipelined" if args.pipeline \
            else f"concurrency {args.concurrency}"
        print(f"storm: {len(storm)} {what} through the ingest ({shape}), "
              f"{args.workers} workers, 1 API process")
        print(f"  pushed in {pushed:.2f} s ({len(storm) / pushed:,.0f} events/s); {n} delivered in {took:.2f} s = "
              f"{rate:,.0f} deliveries/s")
        print(f"  baseline: raw aiohttp loop, 20 concurrent POSTs: {base:,.0f} POSTs/s")
        print(f"  ratio engine/baseline: {rate / base:.2f}   (goal ≥ 0.5)")
        print(f"  workers' CPU: {cpu / max(1, n) * 1e6:.0f} µs per delivery (goal ≤ 400); API CPU: "
              f"{api_cpu / len(storm) * 1e6:.0f} µs per event")
        split = {"workers": cpu, "api": api_cpu, **spent}
        total_cpu = sum(split.values())
        print(f"  CPU per event, every process: {total_cpu / max(1, n) * 1e6:.0f} µs (" + ", ".join(
            f"{name} {v / max(1, n) * 1e6:.0f}" for name, v in split.items()) + "); the raw loop: "
              f"{sum(base_cpu.values()) / len(storm) * 1e6:.0f} µs per POST (" + ", ".join(
            f"{name} {v / len(storm) * 1e6:.0f}" for name, v in base_cpu.items()) + ")")
        if sent_calls is not None:
            ranked = sorted(sent_calls.items(), key=lambda kv: -kv[1])[:8]
            top = ", ".join(f"{k} {v / max(1, n):.3f}" for k, v in ranked)
            print(f"  Redis calls per delivery (sent by clients, MONITOR): {sum(sent_calls.values()) / max(1, n):.2f} "
                  f"(goal ≤ 1.5): {top}")
        top = ", ".join(f"{k} {v / max(1, n):.2f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1])[:8])
        print(f"  script calls per delivery: {used.get('evalsha', 0) / max(1, n):.2f} EVALSHA; every command Redis "
              f"ran, scripts' included: {sum(used.values()) / max(1, n):.1f} ({top})")
        print(f"  push-to-delivery latency: p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms")
    finally:
        stop([*workers, *procs])
        r.flushdb()
    return 0


def _key(delivery_id: str, routes: bool) -> str:
    """The storm's key of a delivery id: the message id of `m:<id>:route:1`, the sn of `d:<sn>:<v>:callback:1`."""
    return delivery_id.split(":")[1]


if __name__ == "__main__":
    sys.exit(main())
