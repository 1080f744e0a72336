"""One chaos run: its own Redis (or 3+3 cluster plus RQ's Redis), the adapter's processes, the recording
receiver and the load; the faults one after another, each followed by its settle time; then the load stops, the
deliveries drain, and what arrived is counted against what was accepted (counting.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

import adapter
from adapter.settings import Settings
from adapter_devtools.chaos import counting, faults, report
from adapter_devtools.chaos.cluster import Cluster, running_cluster
from adapter_devtools.chaos.faults import CLUSTER, SINGLE, Scene
from adapter_devtools.chaos.load import Load, LoadConfig
from adapter_devtools.chaos.loop import LoopThread
from adapter_devtools.chaos.model import Window
from adapter_devtools.chaos.receiver import CALLBACK_PATH, ROUTE_PATH, Receiver
from adapter_devtools.chaos.redis_nodes import RedisNode, free_ports, release_ports
from adapter_devtools.chaos.stack import Admin, Stack, Store, adapter_env, stuck, wait

ROUTE_TOPIC = "dma/report/+/heartbeat"
SINGLE_ARGS = ("--appendonly", "yes", "--appendfsync", "always")


@dataclass(frozen=True)
class Config:
    layout: str = SINGLE
    faults: tuple[str, ...] = faults.SHORT[SINGLE]
    devices: int = 40
    rate: float = 4.0  # events per second per device
    warmup: float = 3.0  # s of load before the first fault
    settle: float = 5.0  # s after a fault's end still counted against it
    workers: int = 2
    lease: float = 3.0  # ADAPTER_DELIVERY_LEASE
    schedule: str = "0.5s,1s,1s,2s,2s,2s,2s,2s,2s,2s"  # ADAPTER_DELIVERY_SCHEDULE (~17 s before dead)
    delivery_timeout: float = 3.0  # ADAPTER_DELIVERY_TIMEOUT (a pending entry is claimed again after it + 5 s)
    target_concurrency: int | None = None  # ADAPTER_DELIVERY_TARGET_CONCURRENCY; None: the service's default
    kill_spacing: float = 3.0  # s between two worker kills
    quiet: float = 12.0  # the drain ends when nothing arrived for this long (more than a claim period)
    drain_for: float = 90.0  # ... or after this long
    recovery_goal: float = 2.0
    logs: Path | None = None  # keep the processes' logs here (else in the run's temporary directory)
    records: Path | None = None  # write every item, arrival, answer, window and exit here (JSON)
    extra_env: dict[str, str] = field(default_factory=dict)
    full_coverage: bool = False  # the cluster's cluster-require-full-coverage (docs/cluster.md advises no)
    connections: int = 0  # > 0: the load pipelines on this many connections, as EMQX's connector (chaos/pipelined.py)

    @property
    def cap(self) -> int:
        return self.target_concurrency or Settings.delivery_target_concurrency

    def adapter_overrides(self) -> dict[str, str]:
        env = {"ADAPTER_DELIVERY_LEASE": f"{self.lease:g}", "ADAPTER_DELIVERY_SCHEDULE": self.schedule,
               "ADAPTER_DELIVERY_TIMEOUT": f"{self.delivery_timeout:g}"}
        if self.target_concurrency:
            env["ADAPTER_DELIVERY_TARGET_CONCURRENCY"] = str(self.target_concurrency)
        if self.layout == CLUSTER:  # each primary has a replica: the 200 once it has the event (docs/reliability.md)
            env["ADAPTER_INGEST_WAIT_REPLICAS"] = "1"
        return env | self.extra_env

    def summary(self) -> dict[str, object]:
        return {"devices": self.devices, "rate": self.rate, "faults": list(self.faults), "warmup": self.warmup,
                "settle": self.settle, "workers": self.workers, "lease": self.lease, "schedule": self.schedule,
                "delivery_timeout": self.delivery_timeout, "target_concurrency": self.cap,
                "kill_spacing": self.kill_spacing, "connections": self.connections,
                **({"env": self.extra_env} if self.extra_env else {})}


@dataclass
class Redis:
    """The run's Redis: one server, or the cluster and RQ's own server."""

    store: Store
    single: RedisNode | None = None
    cluster: Cluster | None = None


@contextmanager
def single_redis(root: Path, logs: Path) -> Iterator[Redis]:
    [port] = free_ports(1)
    node = RedisNode(port, root, logs, SINGLE_ARGS)
    try:
        node.start()
        yield Redis(Store(node.url, node.url), single=node)
    finally:
        node.stop()
        release_ports([port])


@contextmanager
def cluster_redis(root: Path, logs: Path, full_coverage: bool = False) -> Iterator[Redis]:
    [port] = free_ports(1)
    rq = RedisNode(port, root, logs, ())
    try:
        rq.start()
        with running_cluster(root, logs, full_coverage) as cluster:
            yield Redis(Store(f"redis+cluster://127.0.0.1:{cluster.entry.port}", rq.url), cluster=cluster)
    finally:
        rq.stop()
        release_ports([port])


def commit() -> str:
    """The last commit that changed the adapter under test (its package), "-dirty" with
    uncommitted changes there: what the figures are figures of."""
    root = Path(adapter.__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h", "--", "adapter"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "adapter"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def run(config: Config) -> report.Result:
    started = time.monotonic()
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="chaos-"))
        stack.callback(shutil.rmtree, root, True)
        logs = config.logs or root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        loop = LoopThread()
        stack.callback(loop.close)
        receiver = Receiver()
        url = loop.run(receiver.start())
        stack.callback(lambda: loop.run(receiver.stop()))
        redis = stack.enter_context(single_redis(root, logs) if config.layout == SINGLE
                                    else cluster_redis(root, logs, config.full_coverage))
        env = adapter_env(redis.store, config.adapter_overrides())
        app = Stack(env, root, logs, config.workers)
        stack.callback(app.stop)
        app.start()
        admin = Admin(app.base, env["ADAPTER_ADMIN_PASSWORD"])
        stack.callback(admin.close)
        route, callback = admin.add_route(ROUTE_TOPIC, url + ROUTE_PATH), admin.add_callback(url + CALLBACK_PATH)
        load = Load(LoadConfig(f"{app.base}/emqx/events", env["ADAPTER_INGEST_TOKEN"], config.devices, config.rate,
                               route, callback, connections=config.connections))
        running = asyncio.run_coroutine_threadsafe(load.run(), loop.loop)
        stack.callback(running.cancel)
        wait(lambda: receiver.arrivals, 30, "the first delivery")
        time.sleep(config.warmup)
        scene = Scene(app.supervisor, app.workers, config.kill_spacing, free_ports(1)[0], redis.single, redis.cluster)
        windows = inject(config, scene)
        load.stop()
        running.result(timeout=load.config.retry_for + 30)
        drain(config, load, receiver)
        final = stuck(app.store_client(), app.keys, {t: admin.held(t) for t in (route, callback)})
        app.stop()
        rows = counting.figures(load.items, receiver.arrivals, load.answers, windows, app.supervisor.exits)
        if config.records:
            config.records.write_bytes(orjson.dumps({
                "items": load.items, "arrivals": receiver.arrivals, "answers": load.answers, "windows": windows,
                "exits": app.supervisor.exits}))
        settings = config.summary()
        if load.pool is not None:
            settings["most_in_flight"] = load.pool.most_in_flight
        return report.Result(
            layout=config.layout, commit=commit(), settings=settings, rows=rows, stuck=final,
            goals=counting.Goals(config.cap, config.recovery_goal, config.lease), exits=app.supervisor.exits,
            retired=len(load.retired), malformed=receiver.malformed, seconds=time.monotonic() - started,
            logs={"worker": report.notable_lines(sorted(logs.glob("worker-*.log"))),
                  "api": report.notable_lines([logs / "api.log"])})
    raise AssertionError("unreachable")  # the with block returns


def inject(config: Config, scene: Scene) -> list[Window]:
    """Each fault, then its settle time: what happens until then is counted against it."""
    windows = []
    for name in config.faults:
        happened = faults.FAULTS[name].make(scene)
        until = max(happened.end + config.settle, time.monotonic())
        windows.append(Window(name, happened.start, happened.end, until, happened.note))
        time.sleep(max(0.0, until - time.monotonic()))
    return windows


def drain(config: Config, load: Load, receiver: Receiver) -> None:
    """Until every accepted item arrived, or nothing arrived for `quiet` s, or `drain_for` s passed."""
    accepted = {i.delivery_id for i in load.items if i.accepted}
    deadline = time.monotonic() + config.drain_for
    count, moved = -1, time.monotonic()
    while time.monotonic() < deadline:
        arrived = {a.delivery_id for a in list(receiver.arrivals)}
        if accepted <= arrived:
            return
        if len(receiver.arrivals) != count:
            count, moved = len(receiver.arrivals), time.monotonic()
        elif time.monotonic() - moved > config.quiet:
            return
        time.sleep(0.25)
