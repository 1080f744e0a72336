"""Benchmark a rollout at full speed: 100,000 devices (by default), one API process and one worker process.

Plants N online devices in the Redis database given (it is FLUSHED first and last), starts `adapter api` and
`adapter worker` as processes, POSTs a rollout over every device at a rate it cannot reach (`publishNow: false`:
the commands wait for their devices, so this measures the rollout, not EMQX), and while it runs reads its progress
(`GET /remotectl/rollouts?id=`) in a loop from one client. Prints:
  - the dispatch rate (devices/s, from the first to the last dispatch time the rollout recorded);
  - Redis memory per execution: the rollout's own keys (MEMORY USAGE of its execs, results, in-flight sets) and
    the whole `used_memory` growth (which includes each execution's command record) divided by N;
  - the progress read's latency while the rollout runs: p50, p99, max (goal: p99 <= 10 ms), and the same read
    once the worker is stopped (the baseline of the session).
Information only: prints numbers, asserts nothing.

    .venv/bin/python scripts/bench_rollouts.py [--devices 100000] [--redis-url redis://127.0.0.1:6379/4]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import redis

from adapter.store.keys import Keys

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-admin-secret"
BASE = "/iot/api/v1/remotectl/rollouts"
K = Keys("iot")  # the service's keys on one Redis, default prefix


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def plant(r: redis.Redis, n: int) -> None:
    """N online devices as the ingest leaves them (one Redis layout, prefix `iot`)."""
    for start in range(0, n, 5000):
        with r.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 5000)):
                sn = f"BR{i:07}"
                pipe.hset(f"iot:client:{sn}", mapping={"device": "1", "online": "1", "version": "1",
                                                       "connected_at": "1542188264000"})
                pipe.zadd("iot:devices", {sn: 0})
                pipe.zadd("iot:devices:online", {sn: 0})
            pipe.execute()


def reader(api: httpx.Client, rid: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        r = api.get(BASE, params={"id": rid})
        out.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"progress read failed: {r.text}")
        time.sleep(0.01)


# EMQX's bulk publish, accepting everything (200, one id per message), as a process of its own: a broker that takes
# the rollout's commands, like a real one (`--emqx down` points the worker at a closed port instead: every publish
# fails and is retried on the command retry schedule, a fault rather than a rollout)
FAKE_EMQX = """
import sys, orjson, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def bulk(request):
    n = len(orjson.loads(await request.body()))
    return Response(orjson.dumps([{"id": "00061A4C2B1E5F3AF4420000030F0003"}] * n), media_type="application/json")

app = Starlette(routes=[Route("/api/v5/publish/bulk", bulk, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/4")
    ap.add_argument("--worker-nice", type=int, default=0, help="the worker's ADAPTER_WORKER_NICE (docker-compose: 10)")
    ap.add_argument("--emqx", choices=("up", "down"), default="up",
                    help="up: a loopback EMQX that takes every publish; down: a closed port (publishes retried)")
    args = ap.parse_args()
    r = redis.Redis.from_url(args.redis_url, decode_responses=True)
    r.flushdb()
    plant(r, args.devices)
    port = free_port()
    env = {**os.environ, "ADAPTER_REDIS_URL": args.redis_url, "ADAPTER_ADMIN_PASSWORD": PASSWORD,
           "ADAPTER_INGEST_TOKEN": "bench", "ADAPTER_EMQX_API_URL": "http://127.0.0.1:9/api/v5",
           "ADAPTER_EMQX_API_KEY": "bench", "ADAPTER_EMQX_API_SECRET": "bench"}
    procs = []
    if args.emqx == "up":
        emqx_port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", FAKE_EMQX, str(emqx_port)]))
        env["ADAPTER_EMQX_API_URL"] = f"http://127.0.0.1:{emqx_port}/api/v5"
    worker = subprocess.Popen([sys.executable, "-m", "adapter", "worker"],
                              env={**env, "ADAPTER_WORKER_NICE": str(args.worker_nice)}, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs += [subprocess.Popen([sys.executable, "-m", "adapter", "api", "--port", str(port)], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), worker]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            wait(lambda: _answers(api), 30, "the API")
            token = api.post("/iot/api/v1/auth/login", json={"user": "admin", "password": PASSWORD})
            api.headers["Authorization"] = f"Bearer {token.json()['data']['token']}"
            before = int(r.info("memory")["used_memory"])
            started = time.perf_counter()
            created = api.post(BASE, json={
                "command": {"command": "sh", "body": {"shcmd": "uptime"}, "publishNow": False, "expires": 86400},
                "selector": {"all": True}, "rate": {"perMinute": 1_000_000}, "maxInFlight": 100_000,
                "timeout": 86400})
            if created.status_code != 200:
                raise SystemExit(created.text)
            rid = created.json()["data"]["id"]
            answered = time.perf_counter() - started
            latencies: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=reader, args=(api, rid, stop, latencies), daemon=True)
            thread.start()
            wait(lambda: int(r.hget(K.rollout(rid), "dispatched") or 0) >= args.devices, 900, "every dispatch")
            wait(lambda: not r.hget(K.rollout(rid), "pending"), 60, "the last batch written")
            stop.set()
            thread.join()
            record = r.hgetall(K.rollout(rid))
            span = (int(record["lastDispatch"]) - int(record["firstDispatch"])) / 1000
            own = sum(int(r.memory_usage(k, samples=0) or 0)
                      for k in (K.rollout_execs(rid), K.rollout_results(rid), K.rollout_inflight(rid)))
            grown = int(r.info("memory")["used_memory"]) - before
            worker.terminate()  # the baseline reads run with nothing else going on
            worker.wait(30)
            idle: list[float] = []
            for _ in range(300):
                t0 = time.perf_counter()
                api.get(BASE, params={"id": rid})
                idle.append((time.perf_counter() - t0) * 1000)
            latencies.sort()
            idle.sort()
            print(f"devices {args.devices}, EMQX {args.emqx}, worker niceness {args.worker_nice}; POST answered in "
                  f"{answered:.2f} s; commands published {published(r)}")
            print(f"dispatch: {args.devices} in {span:.1f} s = {args.devices / span:,.0f} devices/s "
                  f"({args.devices / span * 60:,.0f}/min)")
            print(f"memory per execution: rollout keys {own / args.devices:.0f} B; used_memory growth "
                  f"{grown / args.devices:.0f} B (with the command records and their indexes)")
            print(f"progress read while running: {len(latencies)} reads, p50 {statistics.median(latencies):.2f} ms, "
                  f"p99 {latencies[int(len(latencies) * 0.99) - 1]:.2f} ms, max {latencies[-1]:.2f} ms")
            print(f"the same read, worker stopped (baseline): p50 {statistics.median(idle):.2f} ms, "
                  f"p99 {idle[int(len(idle) * 0.99) - 1]:.2f} ms; load average {os.getloadavg()[0]:.1f} "
                  f"on {os.cpu_count()} cores")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        r.flushdb()


def published(r: redis.Redis) -> int:
    """Commands the runner published (EMQX took them), from the service's counters."""
    return sum(int(r.hget(key, 'commands_sends_total{outcome="sent"}') or 0)  # the counters as /metrics sums them
               for key in dict.fromkeys([K.metrics(), *(K.metrics_in(p) for p in K.shards())]))


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/healthz").status_code < 500
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
