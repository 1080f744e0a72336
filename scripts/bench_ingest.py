"""Ingest throughput: `POST /emqx/events` on one API process with the real Redis, against a bare Starlette
endpoint (reads the body, answers 200) on the same uvicorn settings, in the same run.

    .venv/bin/python scripts/bench_ingest.py [--connections 8] [--depth 8] [--seconds 10] [--devices 2000]

The load comes as EMQX sends it: a few connections with requests pipelined on each (its HTTP connector's defaults,
and this project's configuration: 8 connections, up to 100 requests in flight on each); `--connections 8 --depth
8` by default. `--connections 32 --depth 1` sends them on 32 connections one at a time (a load generator's shape,
not EMQX's; figures of both in docs/benchmarks.md).

Three servers, one after the other: the bare endpoint (uvicorn, uvloop, httptools, with `adapter api`'s settings:
no server header, no proxy headers, no access log), the app on the same uvicorn (the ingest's ASGI path), and
`adapter api` itself (the same uvicorn with the API's protocol, adapter/api/protocol.py: what operators run).
Goals (issue 21): `adapter api` ≥ 0.7× the bare endpoint, with 200 only after the effects are in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import run_load

from adapter_devtools.httpwire import build_request

TOKEN = "bench-token"
BARE_APP = '''
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def events(request):
    await request.body()
    return Response(b'{"status":"ok","data":{}}', media_type="application/json")

def create_app():
    return Starlette(routes=[Route("/emqx/events", events, methods=["POST"])])
'''


def event_mix(devices: int, round_: int = 0) -> list[bytes]:
    """Per device: connect, subscribe, heartbeats and reports, disconnect (ids and times distinct; a later
    `round_` is the same fleet's next session, with new message ids and later times)."""
    bodies: list[dict] = []
    base = 1_764_000_000_000 + round_ * 60_000
    for n in range(devices):
        sn = f"BENCH{n:06d}"
        at = base + n * 10
        common = {"clientid": sn, "username": sn, "node": "emqx@127.0.0.1", "metadata": {"rule_id": "bench"},
                  "timestamp": at, "peername": "10.0.0.1:5000"}
        bodies.append({**common, "event": "client.connected", "connected_at": at, "proto_ver": 4,
                       "keepalive": 60, "clean_start": True, "proto_name": "MQTT", "expiry_interval": 0,
                       "is_bridge": False, "mountpoint": "undefined", "conn_props": {"User-Property": {}},
                       "receive_maximum": 32, "sockname": "10.0.0.2:1883", "client_attrs": {}})
        bodies.append({**common, "event": "session.subscribed", "topic": f"dma/cmd/{sn}", "qos": 1,
                       "peerhost": "10.0.0.1", "sub_props": {"User-Property": {}}, "client_attrs": {}})
        reports = [
            ("heartbeat", {"sn": sn, "time": 100, "bootTime": 1, "dur": 15}),
            ("procs", {"sn": sn, "time": 100, "d": [{"n": "monitor", "mem": 1088, "cpu": 0.2},
                                                    {"n": "msghub", "mem": 1140}, {"n": "cmdhandler", "mem": 844}]}),
            ("heartbeat", {"sn": sn, "time": 115, "bootTime": 1, "dur": 15}),
            ("sys", {"sn": sn, "time": 100, "d": {"free": 848988, "load": 0.21, "used": 47000}}),
            ("heartbeat", {"sn": sn, "time": 130, "bootTime": 1, "dur": 15}),
            ("versions", {"sn": sn, "time": 100, "d": [{"n": "monitor", "v": "1.0.0 20181114-173644"},
                                                       {"n": "msghub", "v": "1.0.0 20181114-173644"}]}),
        ]
        for i, (kind, payload) in enumerate(reports):
            bodies.append({**common, "event": "message.publish", "id": f"{round_:08X}{n:08X}{i:016X}",
                           "topic": f"dma/report/{sn}/{kind}", "payload": json.dumps(payload), "qos": 0,
                           "flags": {"dup": False, "retain": False}, "peerhost": "10.0.0.1",
                           "pub_props": {"User-Property": {}}, "publish_received_at": at + i + 1,
                           "client_attrs": {}})
        bodies.append({**common, "event": "client.disconnected", "connected_at": at, "disconnected_at": at + 9,
                       "reason": "normal", "proto_ver": 4, "proto_name": "MQTT", "sockname": "10.0.0.2:1883",
                       "disconn_props": {"User-Property": {}}, "client_attrs": {}})
    return [json.dumps(b).encode() for b in bodies]


def start_server(app: str, port: int, env: dict[str, str], cwd: str | None = None) -> subprocess.Popen[bytes]:
    """`app` on uvicorn with the settings `adapter api` gives it (adapter/http/runner.py); "adapter api": that."""
    if app == "adapter api":
        return subprocess.Popen([sys.executable, "-m", "adapter", "api", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    argv = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools",
            "--no-server-header", "--no-proxy-headers"]
    return subprocess.Popen(argv, env=env, cwd=cwd)


def wait_up(port: int, path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


def measure(port: int, requests: list[bytes], args: argparse.Namespace, seconds: float | None = None):
    return asyncio.run(run_load("127.0.0.1", port, requests, args.connections, seconds or args.seconds, warmup=0,
                                depth=args.depth))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): what a request costs the server, however busy
    the machine is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_and_measure(app: str, port: int, env: dict[str, str], requests: list[bytes], args: argparse.Namespace,
                      cwd: str | None = None):
    """Start `app` on uvicorn, drive `requests` at it, stop it: the load's result."""
    proc = start_server(app, port, env, cwd)
    try:
        wait_up(port, "/")
        measure(port, requests, args, 1.0)  # warm-up, not counted
        before = cpu_seconds(proc.pid)
        result = measure(port, requests, args)
        used = cpu_seconds(proc.pid) - before
        print(f"  {app}: server CPU {used:.2f} s, {used / max(len(result.latencies), 1) * 1e6:.1f} µs per request")
        return result
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--depth", type=int, default=8, help="requests pipelined on each connection (EMQX: up to 100)")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    p.add_argument("--port", type=int, default=18990)
    args = p.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    bodies = event_mix(args.devices)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    requests = [build_request("127.0.0.1", "/emqx/events", b, headers) for b in bodies]

    env = dict(os.environ, ADAPTER_REDIS_URL=args.redis_url, ADAPTER_INGEST_TOKEN=TOKEN,
               ADAPTER_ADMIN_PASSWORD="bench-password")
    tmp = Path("/tmp/bench_ingest_bare")
    tmp.mkdir(exist_ok=True)
    (tmp / "bare_app.py").write_text(BARE_APP)

    results = {}
    for name, app, cwd in (("bare starlette", "bare_app:create_app", str(tmp)),
                           ("adapter, ASGI path", "adapter.app:create_app", None),
                           ("adapter api", "adapter api", None)):
        r.flushdb()
        results[name] = serve_and_measure(app, args.port, env, requests, args, cwd)
    print(f"{len(bodies)} distinct events ({args.devices} devices), {args.connections} connections × {args.depth} "
          f"pipelined, "
          f"{args.seconds:.0f} s each, one uvicorn process (uvloop, httptools)")
    for name, res in results.items():
        print(res.line(name))
    bare = results["bare starlette"].rate
    print(f"ratio adapter api/bare: {results['adapter api'].rate / bare:.2f}   (goal ≥ 0.7); "
          f"ASGI path/bare: {results['adapter, ASGI path'].rate / bare:.2f}")
    info = r.info("commandstats")
    print(f"redis evalsha calls: {info.get('cmdstat_evalsha', {}).get('calls', 0)}")
    r.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
