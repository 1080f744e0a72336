"""A local Redis Cluster of 3 primaries and 3 replicas on the suite's own ports (cluster-node-timeout 2000,
AOF): created with `redis-cli --cluster create … --cluster-replicas 1`, watched through each node's own
CLUSTER INFO / CLUSTER NODES, torn down with its directories."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from adapter_devtools.chaos.redis_nodes import RedisNode, free_ports, release_ports

NODE_TIMEOUT_MS = 2000
CLUSTER_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS), "--appendonly", "yes",
                "--repl-diskless-sync-delay", "0")  # (a replica never synced is not promoted: sync at once)


@dataclass(frozen=True)
class NodeLine:
    """One line of CLUSTER NODES."""

    id: str
    port: int
    flags: frozenset[str]
    primary_of: str  # the primary's id for a replica, "-" for a primary
    slots: int  # slots it serves

    @property
    def primary(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?"})


def parse_nodes(text: str) -> list[NodeLine]:
    out = []
    for line in text.strip().splitlines():
        parts = line.split()
        port = int(parts[1].split("@")[0].rpartition(":")[2])
        slots = 0
        for r in parts[8:]:
            if r.startswith("["):
                continue  # a slot being migrated or imported
            a, _, b = r.partition("-")
            slots += int(b or a) - int(a) + 1
        out.append(NodeLine(parts[0], port, frozenset(parts[2].split(",")), parts[3], slots))
    return out


class Cluster:
    def __init__(self, root: Path, logs: Path, ports: list[int], full_coverage: bool = False) -> None:
        args = (*CLUSTER_ARGS, "--cluster-require-full-coverage", "yes" if full_coverage else "no")
        self.nodes = [RedisNode(p, root, logs, args) for p in ports]
        self.log = logs / "cluster.log"

    @property
    def entry(self) -> RedisNode:
        """The node the adapter's URL names (the suite never kills or freezes it)."""
        return self.nodes[0]

    def node(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def live(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.running and not n.frozen]

    def create(self, timeout: float = 60.0) -> None:
        for n in self.nodes:
            n.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        self.redis_cli("--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes", timeout=timeout)
        self.wait(self.converged, timeout, "the cluster to be ok")

    def redis_cli(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=timeout, check=False)
        with open(self.log, "a") as f:
            f.write(f"$ redis-cli {' '.join(args)}\n{done.stdout}{done.stderr}(exit {done.returncode})\n")
        return done

    def view(self, node: RedisNode) -> tuple[dict[str, str], list[NodeLine]] | None:
        """What `node` thinks: its CLUSTER INFO and CLUSTER NODES (None when it does not answer)."""
        try:
            with node.client() as c:
                info = c.execute_command("CLUSTER", "INFO")
                nodes = c.execute_command("CLUSTER", "NODES")
        except redis.exceptions.RedisError:
            return None
        if isinstance(info, str):
            info = dict(line.split(":", 1) for line in info.strip().splitlines() if ":" in line)
        return info, parse_nodes(nodes)

    def primaries(self) -> list[NodeLine]:
        """The primaries serving slots, as the entry node sees them."""
        seen = self.view(self.entry)
        assert seen is not None, "the entry node does not answer"
        return [n for n in seen[1] if n.primary and n.slots and not n.failing]

    def converged(self) -> bool:
        """Every live node: cluster_state ok, all slots assigned, no node flagged failing, and every node
        of the cluster known."""
        for node in self.live():
            seen = self.view(node)
            if seen is None:
                return False
            info, lines = seen
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_assigned") != "16384":
                return False
            if any(n.failing for n in lines) or len(lines) != len(self.nodes):
                return False
        return True

    def served_without(self, gone: str) -> bool:
        """Every live node: cluster_state ok and node `gone` serves no slot (its replica took over)."""
        for node in self.live():
            seen = self.view(node)
            if seen is None or seen[0].get("cluster_state") != "ok":
                return False
            if any(n.id == gone and n.slots for n in seen[1]):
                return False
        return True

    @staticmethod
    def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.1)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@contextmanager
def running_cluster(root: Path, logs: Path, full_coverage: bool = False) -> Iterator[Cluster]:
    """Six nodes on free ports (redis_nodes.PORTS), a cluster of 3+3 made of them; every node killed after.
    `full_coverage`: cluster-require-full-coverage (no: the live primaries go on serving while one is down, as
    docs/cluster.md advises)."""
    ports = free_ports(6, bus=True)
    cluster = Cluster(root, logs, ports, full_coverage)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.stop()
        release_ports(ports)
