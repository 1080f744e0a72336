"""Ingest on Redis Cluster: how evenly the ingest mix loads the primaries, and its throughput against one Redis in
the same run.

    .venv/bin/python scripts/bench_cluster_ingest.py --cluster-ports "7001 7002 7003" [--devices 6000]
        [--seconds 10] [--connections 32] [--redis-url redis://127.0.0.1:6379/10]

One API process (uvicorn, uvloop, httptools) receives the same distinct events (scripts/bench_ingest.py's mix:
connect, subscribe, heartbeats and reports, disconnect per device) first on one Redis, then on the cluster
(`redis+cluster://`, ADAPTER_CLUSTER_PARTITIONS partitions). Before the cluster run every primary's INFO
commandstats is reset; after it, each primary's share of the microseconds Redis spent in commands is printed.
Goal (issue 15): every primary within ±15% of the mean share.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import TOKEN, event_mix, serve_and_measure

from adapter_devtools.httpwire import build_request


def primaries(ports: list[int]) -> list[redis.Redis]:
    return [redis.Redis(host="127.0.0.1", port=p) for p in ports
            if redis.Redis(host="127.0.0.1", port=p).info("replication")["role"] == "master"]


def command_usec(node: redis.Redis) -> tuple[int, int]:
    """(calls, usec) over every command this node ran since its last CONFIG RESETSTAT."""
    stats = node.info("commandstats")
    return (sum(int(v["calls"]) for v in stats.values()), sum(int(v["usec"]) for v in stats.values()))


def unlink_prefix(nodes: list[redis.Redis], prefix: str) -> None:
    for node in nodes:
        batch = list(node.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(batch), 500):
            for key in batch[i:i + 500]:
                node.unlink(key)  # one key per call: keys of a batch may be in different slots


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cluster-ports", required=True, help='the cluster\'s ports, e.g. "7001 7002 7003"')
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/10", help="one Redis, for the baseline")
    p.add_argument("--devices", type=int, default=6000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--partitions", type=int, default=48)
    p.add_argument("--port", type=int, default=18991)
    args = p.parse_args()
    ports = [int(x) for x in args.cluster_ports.split()]

    bodies = event_mix(args.devices)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    requests = [build_request("127.0.0.1", "/emqx/events", b, headers) for b in bodies]
    single = redis.Redis.from_url(args.redis_url)
    single.flushdb()
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    nodes = primaries(ports)
    base = dict(os.environ, ADAPTER_INGEST_TOKEN=TOKEN, ADAPTER_ADMIN_PASSWORD="bench-password")
    runs = {
        "one Redis": dict(base, ADAPTER_REDIS_URL=args.redis_url),
        f"cluster ({len(nodes)} primaries, P={args.partitions})": dict(
            base, ADAPTER_REDIS_URL=f"redis+cluster://127.0.0.1:{ports[0]}", ADAPTER_KEY_PREFIX=prefix,
            ADAPTER_CLUSTER_PARTITIONS=str(args.partitions), ADAPTER_RQ_REDIS_URL=args.redis_url),
    }
    results = {}
    shares: list[tuple[int, int, int]] = []
    try:
        for name, env in runs.items():
            cluster = "cluster" in name
            if cluster:
                for node in nodes:
                    node.config_resetstat()
            results[name] = serve_and_measure("adapter.app:create_app", args.port, env, requests, args)
            if cluster:
                for node in nodes:
                    calls, usec = command_usec(node)
                    shares.append((int(node.connection_pool.connection_kwargs["port"]), calls, usec))
    finally:
        unlink_prefix(nodes, prefix)
        single.flushdb()

    print(f"{len(bodies)} distinct events ({args.devices} devices), {args.connections} connections, "
          f"{args.seconds:.0f} s each, one uvicorn process (uvloop, httptools)")
    for name, res in results.items():
        print(res.line(name))
    names = list(results)
    print(f"ratio cluster/one Redis: {results[names[1]].rate / results[names[0]].rate:.2f}")
    total = sum(u for _, _, u in shares) or 1
    mean = total / len(shares)
    worst = 0.0
    for port, calls, usec in shares:
        off = (usec - mean) / mean * 100
        worst = max(worst, abs(off))
        print(f"  primary :{port}  commands {calls:>8}  usec {usec:>10}  share {usec / total * 100:5.1f}%  "
              f"({off:+.1f}% of the mean)")
    print(f"largest deviation from the mean share: {worst:.1f}%   (goal ≤ 15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
