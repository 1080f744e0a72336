"""The faults, each a function that makes it and undoes it (or waits until it is over), answering when it
started and ended (docs/reliability.md; how each is made: shared/FAULTS.md). They poll with deadlines; the only
sleeps are those that keep a fault on for its length."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapter_devtools.chaos.cluster import Cluster
from adapter_devtools.chaos.procs import Supervisor
from adapter_devtools.chaos.redis_nodes import RedisNode

PAUSE_S = 5.0
OOM_S = 4.0
DEMOTED_S = 3.0
FROZEN_S = 5.0
REDIS_DOWN_S = 1.0  # between the kill and the restart (a supervisor's restart delay)
WORKER_KILLS = 3
RESHARD_SLOTS = 2000
CLUSTER_WAIT_S = 60.0


@dataclass(frozen=True)
class Happened:
    start: float
    end: float
    note: str = ""


@dataclass
class Scene:
    """What faults act on."""

    supervisor: Supervisor
    workers: list[str]
    kill_spacing: float  # s between two worker kills
    spare_port: int  # a port nobody listens on (REPLICAOF)
    single: RedisNode | None = None
    cluster: Cluster | None = None

    @property
    def redis(self) -> RedisNode:
        assert self.single is not None, "a fault of one Redis on a cluster run"
        return self.single

    @property
    def nodes(self) -> Cluster:
        assert self.cluster is not None, "a cluster fault on a run on one Redis"
        return self.cluster


def redis_restart(s: Scene) -> Happened:
    """SIGKILL the redis-server, start it again on the same --dir (AOF, fsync always); over once it answers."""
    start = time.monotonic()
    s.redis.kill()
    time.sleep(REDIS_DOWN_S)
    s.redis.start(ready_within=60)
    return Happened(start, time.monotonic())


def pause(s: Scene) -> Happened:
    with s.redis.client() as c:
        c.execute_command("CLIENT", "PAUSE", int(PAUSE_S * 1000), "ALL")
    start = time.monotonic()
    time.sleep(PAUSE_S)
    return Happened(start, time.monotonic())


def oom(s: Scene) -> Happened:
    with s.redis.client() as c:
        c.config_set("maxmemory-policy", "noeviction")
        c.config_set("maxmemory", 1)
        start = time.monotonic()
        time.sleep(OOM_S)
        c.config_set("maxmemory", 0)
    return Happened(start, time.monotonic())


def demoted(s: Scene) -> Happened:
    """What a Sentinel failover does to the old primary: a replica of a primary that is not there."""
    with s.redis.client() as c:
        c.execute_command("REPLICAOF", "127.0.0.1", s.spare_port)
        start = time.monotonic()
        time.sleep(DEMOTED_S)
        c.execute_command("REPLICAOF", "NO", "ONE")
    return Happened(start, time.monotonic())


def worker_kill(s: Scene) -> Happened:
    """SIGKILL a worker, WORKER_KILLS times, `kill_spacing` apart, each started again at once (alternating, so
    one always survives)."""
    start = time.monotonic()
    for n in range(WORKER_KILLS):
        if n:
            time.sleep(s.kill_spacing)
        s.supervisor.kill(s.workers[n % len(s.workers)], signal.SIGKILL)
    return Happened(start, time.monotonic())


def _victim(c: Cluster) -> RedisNode:
    """A primary that is not the adapter's entry node, serving the most slots."""
    lines = sorted((n for n in c.primaries() if n.port != c.entry.port), key=lambda n: -n.slots)
    return c.node(lines[0].port)


def primary_kill(s: Scene) -> Happened:
    """SIGKILL a primary; over once its replica serves its slots (automatic failover). Then the killed node
    starts again on its own nodes.conf and rejoins as a replica."""
    c = s.nodes
    victim = _victim(c)
    gone = next(n.id for n in c.primaries() if n.port == victim.port)
    start = time.monotonic()
    victim.kill()
    c.wait(lambda: c.served_without(gone), CLUSTER_WAIT_S, "the replica to take over")
    end = time.monotonic()
    victim.start()
    c.wait(c.converged, CLUSTER_WAIT_S, "the killed primary to rejoin")
    return Happened(start, end, f"killed :{victim.port}")


def primary_freeze(s: Scene) -> Happened:
    """SIGSTOP a primary for FROZEN_S (longer than cluster-node-timeout: its replica is promoted), SIGCONT."""
    c = s.nodes
    victim = _victim(c)
    start = time.monotonic()
    victim.freeze()
    time.sleep(FROZEN_S)
    victim.thaw()
    end = time.monotonic()
    c.wait(c.converged, CLUSTER_WAIT_S, "the cluster to converge after the freeze")
    return Happened(start, end, f"froze :{victim.port}")


def failover(s: Scene) -> Happened:
    """A graceful failover (`CLUSTER FAILOVER` on a primary's replica: what an operator does before maintenance);
    over once the replica serves the old primary's slots."""
    c = s.nodes
    victim = _victim(c)
    old = next(n.id for n in c.primaries() if n.port == victim.port)
    seen = c.view(c.entry)
    assert seen is not None, "the entry node does not answer"
    replica = c.node(next(n.port for n in seen[1] if n.primary_of == old and not n.failing))
    start = time.monotonic()
    done = c.redis_cli("-p", str(replica.port), "CLUSTER", "FAILOVER", timeout=30)
    c.wait(lambda: c.served_without(old), CLUSTER_WAIT_S, "the replica to take over")
    end = time.monotonic()
    c.wait(c.converged, CLUSTER_WAIT_S, "the cluster to converge after the failover")
    said = (done.stdout + done.stderr).strip()
    return Happened(start, end, f":{replica.port} took over :{victim.port} ({said})")


def reshard(s: Scene) -> Happened:
    """A live migration of RESHARD_SLOTS slots from the primary serving the most to another one."""
    c = s.nodes
    lines = sorted(c.primaries(), key=lambda n: -n.slots)
    source, dest = lines[0], lines[-1]
    start = time.monotonic()
    done = c.redis_cli("--cluster", "reshard", f"127.0.0.1:{c.entry.port}", "--cluster-from", source.id,
                       "--cluster-to", dest.id, "--cluster-slots", str(RESHARD_SLOTS), "--cluster-yes",
                       timeout=300)
    end = time.monotonic()
    note = f"{RESHARD_SLOTS} slots :{source.port} -> :{dest.port}"
    if done.returncode:
        tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
        note += f"; redis-cli failed: {tail[0][:120]}"
        c.redis_cli("--cluster", "fix", f"127.0.0.1:{c.entry.port}", "--cluster-yes", timeout=300)
    c.wait(c.converged, CLUSTER_WAIT_S, "the cluster to converge after the migration")
    return Happened(start, end, note)


@dataclass(frozen=True)
class Fault:
    name: str
    layouts: frozenset[str]
    make: Callable[[Scene], Happened]


SINGLE, CLUSTER = "single", "cluster"
FAULTS = {f.name: f for f in (
    Fault("redis-restart", frozenset({SINGLE}), redis_restart),
    Fault("pause", frozenset({SINGLE}), pause),
    Fault("oom", frozenset({SINGLE}), oom),
    Fault("readonly", frozenset({SINGLE}), demoted),
    Fault("worker-kill", frozenset({SINGLE, CLUSTER}), worker_kill),
    Fault("primary-kill", frozenset({CLUSTER}), primary_kill),
    Fault("reshard", frozenset({CLUSTER}), reshard),
    Fault("primary-freeze", frozenset({CLUSTER}), primary_freeze),
    Fault("failover", frozenset({CLUSTER}), failover),
)}
SHORT = {SINGLE: ("pause", "oom", "readonly", "redis-restart", "worker-kill"), CLUSTER: ("primary-kill", "reshard")}
LONG = {SINGLE: ("redis-restart", "pause", "oom", "readonly", "worker-kill"),
        CLUSTER: ("primary-kill", "reshard", "primary-freeze", "worker-kill")}
