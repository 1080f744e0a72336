"""Benchmark `adapter store migrate` on a store of 100,000 devices: one Redis -> a Redis Cluster -> one Redis.

Starts its own servers (no persistence) on the given ports, all killed at the end: two plain redis-servers (the
source and the way back) and a 3-primary cluster (no replicas). The source store:
- N devices loaded raw in the ingest's layout (scripts/bench_devices.py `load`: each client hash with presence and
  its last reports, the devices index, the online/offline indexes; a third online): writing 100k devices through
  the HTTP ingest would take this 2-core machine minutes and measure the ingest, not the migration;
- through the service itself (the app in this process, httpx's ASGI transport): peripherals reported by 1,000
  devices (EMQX events through `POST /emqx/events`), 100 device credentials, 2 callbacks and 2 routes, and
  1,000 pending commands (API, 40 devices a request).
Then it runs the migration there and back (adapter/migrate/run.py, as `adapter store migrate --yes-stopped` does) and
prints, per hop: wall time, keys/s, devices/s and whether the counts per kind matched.

    .venv/bin/python scripts/bench_migrate.py [--devices 100000] [--ports "7740 7741 7742 7743 7744"]
        [--partitions 48] [--batch 1000] [--reshard-ports "7745 7746 7747" --reshard-partitions 24]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from adapter.app import create_app
from adapter.migrate import run
from adapter.settings import Settings
from adapter.store.keys import Keys

sys.path.insert(0, str(Path(__file__).parent))
from bench_devices import load, sn_of

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "emqx" / "events"
TOKEN, PASSWORD = "bench-ingest-token", "bench-admin-password"
CMD = "/iot/api/v1/remotectl/commands"


@contextmanager
def servers(ports: list[int], cluster: bool = False) -> Iterator[None]:
    root = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    procs = []
    try:
        for port in ports:
            d = root / str(port)
            d.mkdir()
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"] if cluster else []
            procs.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                                           "--save", "", "--appendonly", "no", *extra],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            for _ in range(200):
                try:
                    if redis.Redis(port=port).ping():
                        break
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
        if cluster:
            subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            while redis.Redis(port=ports[0], decode_responses=True).cluster("info").get("cluster_state") != "ok":
                time.sleep(0.1)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def event(name: str, **changes: object) -> dict[str, object]:
    body = json.loads((SAMPLES / f"{name}.json").read_text())
    body.update(changes)
    return body


async def through_the_service(settings: Settings, devices: int) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                   base_url="http://bench", timeout=60) as c:
        ingest = {"Authorization": f"Bearer {TOKEN}"}
        for n in range(0, devices, max(1, devices // 1000)):
            sn = sn_of(n)
            report = {"sn": sn, "d": [{"nId": "P1", "gwId": "G", "online": True, "msg": {"t": n}},
                                      {"nId": "P2", "gwId": "G", "online": False, "msg": {}}]}
            r = await c.post("/emqx/events", headers=ingest, json=event(
                "message_publish", clientid=sn, username=sn, topic=f"dma/report/{sn}/peripherals",
                payload=json.dumps(report), publish_received_at=1_717_000_000_000 + n, id=f"{n:032X}"))
            r.raise_for_status()
        login = await c.post("/iot/api/v1/auth/login", json={"user": "admin", "password": PASSWORD})
        admin = {"Authorization": f"Bearer {login.json()['data']['token']}"}
        for n in range(0, devices, max(1, devices // 100)):
            (await c.post("/iot/api/v1/devices/credentials", headers=admin, json={"sn": sn_of(n)})).raise_for_status()
        for body in ({"type": "device", "url": "https://example.com/d"},
                     {"type": "peripheral", "url": "https://example.com/p"}):
            (await c.post("/iot/api/v1/monitor/devices/callbacks", headers=admin, json=body)).raise_for_status()
        for body in ({"name": "all", "topic": "dma/#", "url": "https://example.com/all"},
                     {"name": "sys", "topic": "dma/report/+/sys", "url": "https://example.com/sys"}):
            (await c.post("/iot/api/v1/msgroute/configs", headers=admin, json=body)).raise_for_status()
        for lo in range(0, 1000, 40):
            to = [{"sn": sn_of(n * 97 % devices)} for n in range(lo, lo + 40)]
            r = await c.post(CMD, headers=admin, json={"from": "bench", "to": to, "command": "sh", "method": "",
                                                       "body": {"shcmd": "id"}, "publishNow": False,
                                                       "maxRetries": 3, "expires": 86400, "detached": True})
            r.raise_for_status()


def hop(name: str, source: str, target: str, partitions: int, batch: int, devices: int) -> None:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    code = run.run(run.Options(source=source, target=target, partitions=partitions, batch=batch, yes_stopped=True),
                   out=out, err=err)
    wall = time.perf_counter() - start
    keys = next(int(line.split(": ")[-1].split()[0]) for line in err.getvalue().splitlines() if " keys" in line)
    print(f"{name}: exit {code}, {wall:.1f} s wall, {keys} keys, {keys / wall:,.0f} keys/s, "
          f"{devices / wall:,.0f} devices/s, counts {'verified' if code == 0 else 'MISMATCH'}")
    print("\n".join("    " + line for line in err.getvalue().splitlines()))
    print("\n".join("    " + line for line in out.getvalue().splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--ports", default="7740 7741 7742 7743 7744", help="source, back, three cluster primaries")
    parser.add_argument("--partitions", type=int, default=48)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--reshard-ports", default="", help="three more primaries: a cluster -> cluster hop to "
                                                            "--reshard-partitions before the way back")
    parser.add_argument("--reshard-partitions", type=int, default=24)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the servers are killed on the way out
    ports = [int(p) for p in args.ports.split()]
    source, back, cluster = f"redis://127.0.0.1:{ports[0]}/0", f"redis://127.0.0.1:{ports[1]}/0", \
        f"redis+cluster://127.0.0.1:{ports[2]},127.0.0.1:{ports[3]},127.0.0.1:{ports[4]}"
    with servers(ports[:2]), servers(ports[2:5], cluster=True):
        r = redis.Redis(port=ports[0])
        seconds = load(r, Keys("iot"), args.devices)
        print(f"loaded {args.devices} devices raw in {seconds:.1f} s")
        settings = Settings(redis_url=source, ingest_token=TOKEN, admin_password=PASSWORD,
                            emqx_api_url="http://127.0.0.1:9/api/v5", command_max_targets=100)
        start = time.perf_counter()
        asyncio.run(through_the_service(settings, args.devices))
        print(f"through the service (peripherals, credentials, targets, 1000 commands) in "
              f"{time.perf_counter() - start:.1f} s; source: {r.dbsize()} keys, "
              f"{r.info('memory')['used_memory_human']}")
        r.close()
        hop("one Redis -> cluster", source, cluster, args.partitions, args.batch, args.devices)
        if args.reshard_ports:
            more = [int(p) for p in args.reshard_ports.split()]
            with servers(more, cluster=True):
                other = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in more)
                hop(f"cluster ({args.partitions}) -> cluster ({args.reshard_partitions})", cluster, other,
                    args.reshard_partitions, args.batch, args.devices)
                hop("cluster -> one Redis", other, back, args.reshard_partitions, args.batch, args.devices)
            return
        hop("cluster -> one Redis", cluster, back, args.partitions, args.batch, args.devices)


if __name__ == "__main__":
    main()
