"""How soon a route change is in force in another API process: two `adapter api` processes (A and B) on one store;
a route is created (then deleted) through A, and from A's answer on, messages are sent to B's ingest one after another
until B forwards one (after the delete: until B forwards none). Prints, per change, the time from A's answer to the
first message B matched under the change, over `--trials` changes, and checks A itself (the message right after the
answer, sent to A, must follow the change: route_table.py).

    .venv/bin/python scripts/bench_route_change.py --redis-url redis://127.0.0.1:6379/7
    .venv/bin/python scripts/bench_route_change.py --redis-url redis+cluster://127.0.0.1:7201 \\
        --rq-url redis://127.0.0.1:6379/7

The store's keys are written under a throwaway prefix (`rcbench<random>`) and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import httpx

from adapter.settings import Settings
from adapter.store.connections import sync_redis
from adapter.store.keys import Keys

TOKEN, PASSWORD = "bench-ingest", "bench-admin-pw"


def start(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "adapter", "api", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--rq-url", default="")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--ports", default="18941,18942")
    args = ap.parse_args()
    prefix = f"rcbench{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    env |= {"ADAPTER_REDIS_URL": args.redis_url, "ADAPTER_KEY_PREFIX": prefix, "ADAPTER_INGEST_TOKEN": TOKEN,
            "ADAPTER_ADMIN_PASSWORD": PASSWORD, "ADAPTER_ALLOW_PRIVATE_URLS": "true"}
    if args.rq_url:
        env["ADAPTER_RQ_REDIS_URL"] = args.rq_url
    settings = Settings.from_env(env, dotenv=None)
    keys, r = Keys.of(settings), sync_redis(settings)
    ports = [int(p) for p in args.ports.split(",")]
    procs = [start(p, env) for p in ports]
    a, b = (f"http://127.0.0.1:{p}" for p in ports)
    n = 0
    try:
        for url in (a, b):
            wait_up(url)
        with httpx.Client(timeout=10) as c:
            admin = {"Authorization": "Bearer " + c.post(f"{a}/iot/api/v1/auth/login", json={
                "user": "admin", "password": PASSWORD}).json()["data"]["token"]}
            ingest = {"Authorization": f"Bearer {TOKEN}"}

            def forwarded(url: str, trial: int) -> bool:
                nonlocal n
                n += 1
                body = {"event": "message.publish", "id": f"{n:032X}", "clientid": "RCB", "username": "RCB",
                        "topic": f"rcbench/{trial}/x", "payload": "{}", "qos": 1, "flags": {"retain": False},
                        "publish_received_at": 1_700_000_000_000 + n, "timestamp": 1_700_000_000_000 + n,
                        "node": "bench@127.0.0.1", "peerhost": "127.0.0.1"}
                answer = c.post(f"{url}/emqx/events", headers=ingest, content=json.dumps(body))
                assert answer.status_code == 200, answer.text
                return bool(r.exists(keys.seen(f"msg:{n:032X}", "RCB")))

            created, deleted, own_misses = [], [], 0
            for trial in range(args.trials):
                route = c.post(f"{a}/iot/api/v1/msgroute/configs", headers=admin, json={
                    "name": "bench", "topic": f"rcbench/{trial}/+", "url": "http://127.0.0.1:9/x"}).json()["data"]
                answered = time.monotonic()
                own_misses += not forwarded(a, trial)
                while not forwarded(b, trial):
                    pass
                created.append(time.monotonic() - answered)
                c.delete(f"{a}/iot/api/v1/msgroute/configs", headers=admin, params={"id": route["id"]})
                answered = time.monotonic()
                own_misses += forwarded(a, trial)
                while forwarded(b, trial):
                    pass
                deleted.append(time.monotonic() - answered)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for key in r.scan_iter(match=f"{prefix}*") if not settings.redis_cluster else []:
            r.delete(key)
        if settings.redis_cluster:
            for node in r.get_primaries():  # type: ignore[union-attr]
                conn = r.get_redis_connection(node)  # type: ignore[union-attr]
                for key in conn.scan_iter(match=f"{prefix}*"):
                    conn.delete(key)
        r.close()
    layout = "cluster" if settings.redis_cluster else "one Redis"
    print(f"route change -> in force in another API process ({layout}, {args.trials} trials, {n} messages)")
    for name, xs in (("create", created), ("delete", deleted)):
        xs = sorted(xs)
        print(f"  {name}: p50 {statistics.median(xs) * 1000:.1f} ms, p99 {xs[int(len(xs) * 0.99) - 1] * 1000:.1f} ms,"
              f" max {xs[-1] * 1000:.1f} ms")
    print(f"  the answering process: {own_misses} messages right after an answer matched the old table")
    return 1 if own_misses else 0


if __name__ == "__main__":
    sys.exit(main())
