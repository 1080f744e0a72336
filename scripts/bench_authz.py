"""EMQX's HTTP authentication and authorization against one API process: latency at a fixed request rate.

    .venv/bin/python scripts/bench_authz.py [--rate 1000] [--seconds 10] [--devices 1000]

Open loop: requests are sent on a fixed schedule over keep-alive connections, and each latency is counted
from the moment the request was due (so a stall is not hidden by sending less). Phases:
- authn, steady state: every device's secret already verified once (the cache mark is in Redis);
- authz: devices publishing their heartbeat (no Redis at all);
- authn, cold: distinct devices whose secret was never verified, each costing one argon2id check.

Each phase runs `--repeat` times, interleaved, next to a do-nothing Starlette endpoint under the same load
(the floor this machine and the load generator set). Goal (issue 8): p99 <= 5 ms at 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import redis
from argon2 import PasswordHasher

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_ingest import start_server, wait_up
from loadgen import Result

from adapter.broker.credentials import cache_digest
from adapter.store.keys import Keys
from adapter_devtools.httpwire import build_request

TOKEN = "bench-token"
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstu"
APP = '''
from starlette.responses import Response
from starlette.routing import Route

from adapter.api import emqx_hooks
from adapter.app import create_app as base


async def bare(request):
    await request.body()
    return Response(b'{"result":"allow"}', media_type="application/json")


def create_app():
    app = base()
    if "/emqx/authn" not in {getattr(r, "path", "") for r in app.router.routes}:
        app.router.routes[0:0] = [ep.route() for ep in emqx_hooks.ENDPOINTS]
    app.router.routes.insert(0, Route("/bench/bare", bare, methods=["POST"]))
    return app
'''


async def _connection(host: str, port: int, requests: Sequence[bytes], slots: Sequence[float],
                      out: Result) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for req, due in zip(requests, slots, strict=True):
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line[15:]) for line in head.split(b"\r\n")
                           if line[:15].lower() == b"content-length:"), 0)
            if length:
                await reader.readexactly(length)
            out.latencies.append(time.perf_counter() - due)
            status = int(head[9:12])
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.requests += 1
    finally:
        writer.close()


async def paced(port: int, requests: Sequence[bytes], rate: float, seconds: float,
                connections: int) -> Result:
    """Send `rate` requests per second for `seconds`, request i due at start + i/rate, round-robin."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    due = [start + i / rate for i in range(total)]
    mine = [[requests[i % len(requests)] for i in range(c, total, connections)] for c in range(connections)]
    out = Result(0, 0.0, [], {})
    await asyncio.gather(*(_connection("127.0.0.1", port, mine[c], due[c::connections], out)
                           for c in range(connections)))
    out.seconds = time.perf_counter() - start
    return out


def _post(path: str, body: dict[str, str]) -> bytes:
    return build_request("127.0.0.1", path, json.dumps(body).encode(), {"Authorization": f"Bearer {TOKEN}"})


def provision(r: redis.Redis, keys: Keys, sns: Sequence[str], verified: bool) -> None:
    """Credentials sharing one argon2id hash (hashing each would take minutes); `verified` adds the cache mark
    a first successful connect leaves."""
    hashed = PasswordHasher().hash(SECRET)
    pipe = r.pipeline(transaction=False)
    for n, sn in enumerate(sns):
        pipe.hset(keys.credential(sn), mapping={"hash": hashed, "created": 1_700_000_000 + n})
        pipe.zadd(keys.credentials(), {sn: 1_700_000_000 + n})
        if verified:
            pipe.set(keys.authn_cache(sn), cache_digest(sn, SECRET), ex=3600)
    pipe.execute()


def check_answers(port: int, sn: str) -> None:
    """The load is only worth measuring if the answers are the decisions it expects."""
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    got = [httpx.post(f"{base}/emqx/authn", json={"clientid": sn, "username": sn, "password": SECRET},
                      headers=headers).json(),
           httpx.post(f"{base}/emqx/authz", headers=headers,
                      json={"clientid": sn, "username": sn, "action": "publish",
                            "topic": f"dma/report/{sn}/heartbeat"}).json()]
    if [g.get("result") for g in got] != ["allow", "allow"]:
        raise SystemExit(f"unexpected answers: {got}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--cold", type=int, default=40, help="cache-missing authns in the cold phase")
    p.add_argument("--cold-rate", type=float, default=8, help="their rate per second")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13",
                   help="an empty database (flushed after)")
    p.add_argument("--port", type=int, default=18991)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    if r.dbsize():
        raise SystemExit(f"{args.redis_url} is not empty; give an empty database with --redis-url")
    keys = Keys("iot")
    sns = [f"BENCH{n:06d}" for n in range(args.devices)]
    cold = [f"COLD{n:06d}" for n in range(args.cold)]
    provision(r, keys, sns, verified=True)
    provision(r, keys, cold, verified=False)
    authn = [_post("/emqx/authn", {"clientid": sn, "username": sn, "password": SECRET,
                                   "peerhost": "10.0.0.1"}) for sn in sns]
    authz = [_post("/emqx/authz", {"clientid": sn, "username": sn, "topic": f"dma/report/{sn}/heartbeat",
                                   "action": "publish"}) for sn in sns]
    cold_authn = [_post("/emqx/authn", {"clientid": sn, "username": sn, "password": SECRET}) for sn in cold]
    phases = {"bare starlette (floor)": [_post("/bench/bare", {"clientid": "x"})],
              "authn (cached)": authn, "authz": authz}

    tmp = Path(tempfile.mkdtemp(prefix="bench_authz_"))
    (tmp / "bench_authz_app.py").write_text(APP)
    env = dict(os.environ, ADAPTER_REDIS_URL=args.redis_url, ADAPTER_INGEST_TOKEN=TOKEN,
               ADAPTER_ADMIN_PASSWORD="bench-password", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = start_server("bench_authz_app:create_app", args.port, env, str(tmp))
    try:
        wait_up(args.port, "/healthz")
        check_answers(args.port, sns[0])
        for requests in phases.values():  # warm-up: connections, pools, caches
            asyncio.run(paced(args.port, requests, 500, 1.0, args.connections))
        results: list[tuple[str, Result]] = []
        for _ in range(args.repeat):
            for name, requests in phases.items():
                results.append((name, asyncio.run(paced(args.port, requests, args.rate, args.seconds,
                                                        args.connections))))
        results.append(("authn (cold, argon2id)", asyncio.run(paced(args.port, cold_authn, args.cold_rate,
                                                                    args.cold / args.cold_rate, 8))))
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"one uvicorn process (uvloop, httptools), {args.connections} keep-alive connections, open loop, "
          f"latency from each request's due time; {args.devices} devices; {args.seconds:.0f} s a run")
    for name, res in results:
        print(res.line(name))
    pooled: dict[str, Result] = {}
    for name in phases:
        runs = [res for n, res in results if n == name]
        pooled[name] = Result(sum(r.requests for r in runs), sum(r.seconds for r in runs),
                              [x for r in runs for x in r.latencies], {})
        p99s = sorted(r.pct(0.99) for r in runs)
        whole = pooled[name]
        print(f"{name:<22} all runs: p50 {whole.pct(0.5):.2f} ms, p99 {whole.pct(0.99):.2f} ms; "
              f"p99 per run {' / '.join(f'{x:.2f}' for x in p99s)} ms")
    ok = all(pooled[name].pct(0.99) <= 5.0 for name in ("authn (cached)", "authz"))
    print(f"goal p99 <= 5 ms at {args.rate:.0f}/s: {'met' if ok else 'NOT met'}")
    r.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
