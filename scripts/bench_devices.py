"""Benchmark the device read side at fleet size: page and count latency, Redis memory per device.

Flushes the given Redis database, loads N devices in the ingest's layout (adapter/store/keys.py: one client hash
with presence and the last procs/sys/versions reports of the seed's size, the devices index, and the
online or offline index; about a third online), then times, with limit 100:
- `adapter.devices.reads.device_page` (what the API calls) at the first, middle and last page, with no filter,
  with `online=true`, and with an sn prefix; `device_counts`; `device` (one device);
- the same pages over HTTP against the app served by uvicorn in a child process (skip with --no-http).
Memory per device is the INFO `used_memory` delta over N. Flushes the database again at the end.
Goals (docs/design.md §11): page p50 <= 5 ms at any depth, count <= 1 ms, <= 2 KB per device.

With `--cluster-ports "7131 7132 7133"` the same N devices are then loaded into that Redis Cluster in the
cluster layout (48 index shards, each in its partition's slot; raw ZADD/HSET packed per node) and the same
pages are timed through `device_page` on an async RedisCluster client: warm (the anchor cache and the process's
page hints filled by the warm-up calls) and cold (both removed before every call). It refuses to start when the
cluster already holds keys under the prefix (a live store's, with the default `iot`): give a throwaway `--prefix`,
or `--wipe` to remove them first. The keys it wrote are removed at the end (SCAN + UNLINK on every primary).
`--no-single` skips the single-Redis part.

    .venv/bin/python scripts/bench_devices.py [--count N] [--redis-url redis://127.0.0.1:6379/11]
        [--samples 200] [--no-http] [--hash-max-listpack-value BYTES] [--keep]
        [--cluster-ports "7131 7132 7133" [--prefix benchdev] [--wipe]] [--no-single]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import random
import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import redis
import redis.asyncio as aioredis

from adapter.devices import reads as devices
from adapter.devices import sharded
from adapter.store.keys import Keys

LIMIT = 100
PASSWORD = "bench-admin-password"
BASE = "/iot/api/v1/monitor/devices"
NOW = 1_700_000_000


def sn_of(i: int) -> str:
    return f"8CFC{i:08X}"


def reports(sn: str, rng: random.Random) -> dict[str, str]:
    """procs, sys and versions as the ingest stores them: the payload plus `revtime`, as JSON text."""
    uptime, rev = rng.randrange(10**6), NOW - rng.randrange(600)
    procs = [{"cpu": round(rng.uniform(0, 2), 1), "mem": rng.randrange(800, 4000), "n": n}
             for n in ("monitor", "daemon", "msghub", "dma.cmdhandler")]
    sys = {"free": rng.randrange(600_000, 900_000), "load": round(rng.uniform(0, 1.5), 2),
           "used": rng.randrange(40_000, 60_000)}
    versions = [{"n": n, "v": f"{v} 20181114-173644"} for n, v in
                (("monitor", "1.0.0"), ("msghub", "1.0.0"), ("cmdhandler", "1.0.0"), ("upgrade.cmd", "1.4.0"),
                 ("android.cmd", "1.4.0"))]

    def text(d: Any) -> str:
        return orjson.dumps({"d": d, "revtime": rev, "sn": sn, "time": uptime}).decode()

    return {"procs": text(procs), "sys": text(sys), "versions": text(versions)}


def client_hash(sn: str, online: bool, rng: random.Random) -> dict[Any, str]:
    connected = (NOW - rng.randrange(86_400)) * 1000
    fields = {"online": "1" if online else "0", "connected_at": str(connected),
              "version": str(rng.randrange(1, 40)), "online_time": str(connected),
              "offline_time": str(connected - rng.randrange(1, 10**6)),
              "device": "1", "activeTime": str(NOW - rng.randrange(600)), "bootTime": str(NOW - 10**6),
              "dur": "15", **reports(sn, rng)}
    if not online:
        fields["ended_through"] = str(connected)
        fields["offline_time"] = str(connected + rng.randrange(1, 10**6))
    return fields


def load(r: redis.Redis, keys: Keys, count: int, batch: int = 2000) -> float:
    """Load `count` devices; answers the seconds it took."""
    rng = random.Random(1)
    start = time.perf_counter()
    for lo in range(0, count, batch):
        everyone: dict[str, int] = {}
        by_state: dict[bool, dict[str, int]] = {True: {}, False: {}}
        with r.pipeline(transaction=False) as pipe:
            for i in range(lo, min(lo + batch, count)):
                sn, online = sn_of(i), rng.random() < 1 / 3
                pipe.hset(keys.client(sn), mapping=client_hash(sn, online, rng))
                everyone[sn] = 0
                by_state[online][sn] = 0
            pipe.zadd(keys.devices(), everyone)
            for online, members in by_state.items():
                if members:
                    pipe.zadd(keys.devices_online() if online else keys.devices_offline(), members)
            pipe.execute()
    return time.perf_counter() - start


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return f"p50 {statistics.median(ordered) * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms"


async def timed(call: Callable[[], Awaitable[Any]], samples: int) -> list[float]:
    for _ in range(min(10, samples)):
        await call()
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


def positions(total: int) -> list[tuple[str, int]]:
    last = max(1, math.ceil(total / LIMIT))
    return [("first", 1), ("middle", max(1, last // 2)), ("last", last)]


def scenarios(count: int, online_total: int) -> Iterator[tuple[str, dict[str, Any], int]]:
    """(label, query, total) of each listing measured: unfiltered, online only, an sn prefix."""
    yield "all", {}, count
    yield "online=true", {"online": True}, online_total
    first = (count // 2) >> 12 << 12  # sns are hex: 4,096 in a row share all but the last 3 characters
    yield f"sn={sn_of(first)[:-3]}", {"sn": sn_of(first)[:-3]}, min(count, first + 4096) - first


def page_call(r: devices.Client, keys: Keys, page: int,
              query: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
    async def call() -> devices.Page:
        result = await devices.device_page(r, keys, page=page, limit=LIMIT, **query)
        assert len(result.items) == min(LIMIT, result.total - (page - 1) * LIMIT), (page, query)
        return result

    return call


async def bench_domain(url: str, keys: Keys, count: int, samples: int) -> None:
    r = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        online_total = await r.zcard(keys.devices_online())
        print(f"\nadapter.devices (async redis, one client), limit {LIMIT}, {samples} samples each:")
        for label, query, total in scenarios(count, online_total):
            for where, page in positions(total):
                took = await timed(page_call(r, keys, page, query), samples)
                print(f"  page {label:<16} {where:<6} (page {page:>6}): {percentiles(took)}")
        counts = await timed(lambda: devices.device_counts(r, keys), samples * 5)
        print(f"  device_counts:                               {percentiles(counts)}")
        one = await timed(lambda: devices.device(r, keys, sn_of(count // 2)), samples)
        print(f"  device (one, by sn):                         {percentiles(one)}")
    finally:
        await r.aclose()


def _serve(sock: socket.socket, url: str) -> None:
    import uvicorn

    from adapter.api import devices as devices_api
    from adapter.app import create_app
    from adapter.settings import Settings

    settings = Settings.from_env({"ADAPTER_REDIS_URL": url, "ADAPTER_ADMIN_PASSWORD": PASSWORD,
                                  "ADAPTER_INGEST_TOKEN": "bench"}, dotenv=None)
    app = create_app(settings)
    app.router.routes[0:0] = [ep.route() for ep in devices_api.ENDPOINTS]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def wait_ready(base: str, deadline: float) -> None:
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)


def bench_http(url: str, keys: Keys, count: int, samples: int) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    child = multiprocessing.get_context("fork").Process(target=_serve, args=(sock, url), daemon=True)
    child.start()
    try:
        wait_ready(base, time.monotonic() + 20)
        with httpx.Client(base_url=base, timeout=10) as c:
            token = c.post("/iot/api/v1/auth/login", json={"user": "admin", "password": PASSWORD}).json()
            c.headers["Authorization"] = f"Bearer {token['data']['token']}"
            online_total = c.get(f"{BASE}/count").json()["data"]["online"]
            print(f"\nHTTP (uvicorn in a child process, httpx keep-alive), limit {LIMIT}, "
                  f"{samples} samples each:")
            for label, query, total in scenarios(count, online_total):
                params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
                for where, page in positions(total):
                    took = http_samples(c, BASE, {**params, "page": page, "limit": LIMIT}, samples,
                                        min(LIMIT, total - (page - 1) * LIMIT))
                    print(f"  GET devices {label:<16} {where:<6} (page {page:>6}): {percentiles(took)}")
            print(f"  GET devices/count:                                   "
                  f"{percentiles(http_samples(c, f'{BASE}/count', {}, samples, None))}")
    finally:
        child.terminate()
        child.join(10)
        sock.close()


def http_samples(c: httpx.Client, path: str, params: dict[str, Any], samples: int,
                 count: int | None) -> list[float]:
    out = []
    for i in range(samples + 10):
        start = time.perf_counter()
        r = c.get(path, params=params)
        took = time.perf_counter() - start
        assert r.status_code == 200, r.text
        assert count is None or r.json()["data"]["count"] == count, (path, params)
        if i >= 10:
            out.append(took)
    return out


def report_memory(r: redis.Redis, keys: Keys, count: int, before: int, seconds: float) -> None:
    used = int(r.info("memory")["used_memory"])
    sample = keys.client(sn_of(count // 2))
    hash_bytes = int(r.memory_usage(sample, samples=0) or 0)
    index_bytes = sum(int(r.memory_usage(k, samples=0) or 0) for k in
                      (keys.devices(), keys.devices_online(), keys.devices_offline()))
    print(f"loaded {count:,} devices in {seconds:.1f} s ({count / seconds:,.0f}/s)")
    reports_bytes = sum(len(str(v)) for v in r.hmget(sample, ["procs", "sys", "versions"]))
    delta = used - before
    print(f"used_memory delta: {delta / 2**20:,.1f} MiB = {delta / count:,.0f} B per device")
    print(f"  one client hash ({r.object('encoding', sample)}, {r.hlen(sample)} fields): MEMORY USAGE "
          f"{hash_bytes:,} B; its report strings {reports_bytes:,} B")
    print(f"  the three indexes: {index_bytes / count:,.0f} B per device")


def flush(r: redis.Redis) -> int:
    """FLUSHDB ASYNC (a shared server is not blocked while a million keys are freed); answers used_memory once
    the lazy freeing is done."""
    r.flushdb(asynchronous=True)
    deadline = time.monotonic() + 120
    while (memory := r.info("memory"))["lazyfree_pending_objects"] and time.monotonic() < deadline:
        time.sleep(0.1)
    return int(memory["used_memory"])


async def cluster_wipe(r: Any, prefix: str) -> int:
    """UNLINK every key under the prefix on every primary (a cluster has no FLUSHDB of one prefix)."""
    gone = 0
    for node in r.get_primaries():
        one = aioredis.Redis(host=node.host, port=node.port)
        try:
            batch: list[Any] = []
            async for key in one.scan_iter(match=f"{prefix}:*", count=5000):
                batch.append(key.decode())
                if len(batch) >= 5000:
                    await devices.cluster_round(r, [(k, ("UNLINK", k)) for k in batch])
                    gone, batch = gone + len(batch), []
            if batch:
                await devices.cluster_round(r, [(k, ("UNLINK", k)) for k in batch])
                gone += len(batch)
        finally:
            await one.aclose()
    return gone


async def round_trips(call: Callable[[], Awaitable[Any]]) -> int:
    """How many rounds (each: every primary at once) one call sends through cluster_round (the page's selection
    rounds in devices/sharded.py, its hashes in devices/reads.py)."""
    real, seen = devices.cluster_round, [0]

    async def counting(r: Any, commands: Any) -> list[Any]:
        seen[0] += 1
        return await real(r, commands)

    devices.cluster_round = sharded.cluster_round = counting
    try:
        await call()
    finally:
        devices.cluster_round = sharded.cluster_round = real
    return seen[0]


async def holds_keys(r: Any, prefix: str) -> bool:
    """Whether any primary holds a key under the prefix."""
    for node in r.get_primaries():
        one = aioredis.Redis(host=node.host, port=node.port)
        try:
            async for _ in one.scan_iter(match=f"{prefix}:*", count=1000):
                return True
        finally:
            await one.aclose()
    return False


async def bench_cluster(ports: list[int], prefix: str, count: int, samples: int, wipe: bool = False) -> None:
    import redis.asyncio.cluster as acluster

    keys = Keys(prefix, cluster_partitions=48)
    r = acluster.RedisCluster(host="127.0.0.1", port=ports[0], decode_responses=True)
    await r.initialize()
    if not wipe and await holds_keys(r, prefix):
        await r.aclose()
        raise SystemExit(f"bench_devices.py: the cluster holds keys under {prefix!r} (a live store?); give a "
                         f"throwaway --prefix, or --wipe to remove them first")
    try:
        await cluster_wipe(r, prefix)
        rng = random.Random(1)
        start = time.perf_counter()
        batch = 20_000
        for lo in range(0, count, batch):
            shards: dict[str, list[str]] = {}
            commands: list[Any] = []
            for i in range(lo, min(lo + batch, count)):
                sn, online = sn_of(i), rng.random() < 1 / 3
                key = keys.client(sn)
                commands.append((key, ("HSET", key, *(x for kv in client_hash(sn, online, rng).items() for x in kv))))
                p = keys.shard(sn)
                shards.setdefault(keys.devices(p), []).append(sn)
                shards.setdefault(keys.devices_online(p) if online else keys.devices_offline(p), []).append(sn)
            for key, members in shards.items():
                commands.append((key, ("ZADD", key, *(x for m in members for x in ("0", m)))))
            await devices.cluster_round(r, commands)
        seconds = time.perf_counter() - start
        used = [int((await r.info("memory", target_nodes=n))["used_memory"]) for n in r.get_primaries()]
        print(f"\nRedis Cluster {ports} (3 primaries), {len(keys.shards())} index shards: loaded {count:,} devices "
              f"in {seconds:.1f} s ({count / seconds:,.0f}/s); used_memory per primary "
              f"{', '.join(f'{u / 2**20:,.0f} MiB' for u in used)}")
        counted = await devices.device_counts(r, keys)
        assert counted["total"] == count, counted
        online_total = counted["online"]
        print(f"adapter.devices on the cluster (async RedisCluster, one client), limit {LIMIT}, {samples} samples:")
        anchors = [keys.page_anchors(n) for n in ("devices", "devices:online", "devices:offline")]
        for label, query, total in scenarios(count, online_total):
            for where, page in positions(total):
                took = await timed(page_call(r, keys, page, query), samples)
                trips = await round_trips(page_call(r, keys, page, query))
                cold: list[float] = []
                if where != "first":
                    for _ in range(max(10, samples // 4)):
                        await r.unlink(anchors[1] if query.get("online") else anchors[0])
                        sharded._anchor_copies.clear()
                        sharded._prefix_copies.clear()
                        t = time.perf_counter()
                        await page_call(r, keys, page, query)()
                        cold.append(time.perf_counter() - t)
                extra = f"   cold (no anchor): {percentiles(cold)}" if cold else ""
                print(f"  page {label:<16} {where:<6} (page {page:>6}): {percentiles(took)}  "
                      f"[{trips} round trips]{extra}")
        counts = await timed(lambda: devices.device_counts(r, keys), samples * 5)
        print(f"  device_counts (144 ZCARD, one round):        {percentiles(counts)}")
        one = await timed(lambda: devices.device(r, keys, sn_of(count // 2)), samples)
        print(f"  device (one, by sn):                         {percentiles(one)}")
    finally:
        gone = await cluster_wipe(r, prefix)
        print(f"  removed {gone:,} keys from the cluster")
        await r.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--prefix", default="iot")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--hash-max-listpack-value", type=int, default=None,
                        help="set this Redis config for the load (restored after) to compare encodings")
    parser.add_argument("--keep", action="store_true", help="leave the data in the database")
    parser.add_argument("--cluster-ports", default="", help='e.g. "7131 7132 7133": also bench a Redis Cluster')
    parser.add_argument("--no-single", action="store_true", help="skip the single-Redis part")
    parser.add_argument("--wipe", action="store_true",
                        help="on the cluster: remove the keys already under --prefix first (else refused)")
    args = parser.parse_args()
    if not args.no_single:
        single(args)
    if args.cluster_ports:
        asyncio.run(bench_cluster([int(p) for p in args.cluster_ports.split()], args.prefix, args.count,
                                  args.samples, args.wipe))


def single(args: argparse.Namespace) -> None:
    keys = Keys(args.prefix)
    r = redis.Redis.from_url(args.redis_url, decode_responses=True)
    previous = str(r.config_get("hash-max-listpack-value")["hash-max-listpack-value"])
    try:
        before = flush(r)
        if args.hash_max_listpack_value is not None:
            r.config_set("hash-max-listpack-value", args.hash_max_listpack_value)
        print(f"redis {r.info('server')['redis_version']} at {args.redis_url}, "
              f"hash-max-listpack-value {r.config_get('hash-max-listpack-value')['hash-max-listpack-value']}")
        seconds = load(r, keys, args.count)
        r.config_set("hash-max-listpack-value", previous)
        report_memory(r, keys, args.count, before, seconds)
        asyncio.run(bench_domain(args.redis_url, keys, args.count, args.samples))
        if not args.no_http:
            bench_http(args.redis_url, keys, args.count, args.samples)
    finally:
        r.config_set("hash-max-listpack-value", previous)
        if not args.keep:
            flush(r)
        r.close()


if __name__ == "__main__":
    main()
