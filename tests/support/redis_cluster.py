"""A Redis Cluster of a test's own (3 primaries + 3 replicas, node timeout 2 s, AOF), on free ports in a temporary
directory, for faults that must not touch the shared test cluster: a primary killed (its replica takes over within
about 2-4 s) and started again (it comes back as a replica), or frozen (SIGSTOP) and thawed. Every node is killed
after. TEST_OWN_CLUSTER_PORTS ("p1 … p6") pins its ports (machines shared by several test runs); otherwise free ones
of 20000-39999 are picked."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.servers import wait_for


@dataclass
class ClusterNode:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes]
    extra: tuple[str, ...] = ()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def start(self) -> None:
        self.proc = _spawn(self.port, self.dir, self.extra)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@dataclass
class OwnCluster:
    nodes: list[ClusterNode]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def primaries(self) -> list[ClusterNode]:
        by_port = {n.port: n for n in self.nodes}
        return [by_port[int(p)] for p in _primary_ports(self)]

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        for node in self.nodes:
            if node.proc.poll() is None and node is not primary:
                with redis.Redis(port=node.port, decode_responses=True) as r:
                    info = r.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                    return node
        raise AssertionError(f"no replica of {primary.port}")

    def wait_ok(self, timeout: float = 30) -> None:
        """Every live node says the cluster is OK, every slot covered."""
        wait_for(lambda: all(_ok(n.port) for n in self.nodes if n.proc.poll() is None), timeout=timeout,
                 what="the cluster to be OK", interval=0.1)


def _cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too, so below 55536."""
    for _ in range(200):
        port = random.randrange(20_000, 40_000)
        if port not in taken and _free(port) and _free(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _spawn(port: int, d: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                             "--cluster-node-timeout", "2000", "--appendonly", "yes", "--save", "",
                             "--repl-diskless-sync-delay", "0", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ok(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as r:
            info = r.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
    except redis.exceptions.RedisError:
        return False
    return bool(info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == "16384")


def _primary_ports(cluster: OwnCluster) -> list[str]:
    for node in cluster.nodes:
        if node.proc.poll() is not None:
            continue
        with redis.Redis(port=node.port, decode_responses=True) as r:
            rows = r.execute_command("CLUSTER SLOTS")
        return sorted({str(row[2][1]) for row in rows})
    raise AssertionError("no node runs")


@contextmanager
def own_cluster(*extra: str) -> Iterator[OwnCluster]:
    """The cluster; `extra`: more redis-server options for every node (`--cluster-require-full-coverage`, `no`)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed")
    pinned = [int(p) for p in os.environ.get("TEST_OWN_CLUSTER_PORTS", "").split()]
    if pinned and len(pinned) != 6:
        raise pytest.UsageError("TEST_OWN_CLUSTER_PORTS names 6 ports")
    root = Path(tempfile.mkdtemp(prefix="redis-cluster-fault-"))
    nodes: list[ClusterNode] = []
    try:
        for k in range(6):
            port = pinned[k] if pinned else _cluster_port({n.port for n in nodes})
            d = root / str(port)
            d.mkdir()
            nodes.append(ClusterNode(port, d, _spawn(port, d, extra), extra))
        for n in nodes:
            wait_for(lambda n=n: _pings(n.port), what=f"node {n.port}")
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        cluster = OwnCluster(nodes)
        cluster.wait_ok()
        # a replica that has never synced is not promoted when its primary dies (its data is "too old")
        wait_for(lambda: sum(_synced(n.port) for n in nodes) == 3, timeout=30, what="every replica to sync",
                 interval=0.1)
        yield cluster
    finally:
        for n in nodes:
            if n.proc.poll() is None:
                n.thaw()
                n.proc.kill()
                n.proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _synced(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as r:
        info = r.info("replication")
    return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")


def _pings(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as r:
            return bool(r.ping())
    except redis.exceptions.RedisError:
        return False
