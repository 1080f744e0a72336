"""The adapter under test: its environment, one `adapter api` and the `adapter worker`s under the supervisor,
the admin's view of it through the v1 API (login, the route and the callback the load feeds, their health),
and what the engine still holds in Redis."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from adapter.settings import Settings
from adapter.store.connections import sync_redis
from adapter.store.keys import Keys
from adapter.store.types import SyncRedis
from adapter_devtools.chaos.counting import Stuck
from adapter_devtools.chaos.procs import Proc, Supervisor

API = "/iot/api/v1"
HEALTH = {"route": f"{API}/msgroute/configs/health", "callback": f"{API}/monitor/devices/callbacks/health"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Store:
    """Where the adapter keeps its state (`url`) and RQ its jobs (`rq_url`)."""

    url: str
    rq_url: str


def adapter_env(store: Store, overrides: dict[str, str]) -> dict[str, str]:
    """The environment of the adapter's processes: this one's without any ADAPTER_ setting, plus the store,
    fresh secrets, loopback targets allowed, EMQX's API on a port nobody listens on, no periodic job during
    the run, and `overrides` (the delivery settings of the run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    env |= {"PYTHONUNBUFFERED": "1", "ADAPTER_REDIS_URL": store.url, "ADAPTER_INGEST_TOKEN": secrets.token_hex(16),
            "ADAPTER_ADMIN_PASSWORD": secrets.token_hex(12), "ADAPTER_ALLOW_PRIVATE_URLS": "true",
            "ADAPTER_EMQX_API_URL": f"http://127.0.0.1:{free_port()}/api/v5", "ADAPTER_RECONCILE_INTERVAL": "86400",
            "ADAPTER_RETENTION_INTERVAL": "86400"}
    if store.rq_url != store.url:
        env["ADAPTER_RQ_REDIS_URL"] = store.rq_url
    return env | overrides


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_env(env, dotenv=None)


class Stack:
    """`adapter api` on a free port and `workers` × `adapter worker`, under one supervisor."""

    def __init__(self, env: dict[str, str], cwd: Path, logs: Path, workers: int) -> None:
        self.env = env
        self.settings = settings_of(env)
        self.keys = Keys.of(self.settings)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.supervisor = Supervisor()
        self.workers = [f"worker-{n + 1}" for n in range(workers)]
        self.cwd = cwd
        self.logs = logs

    def _proc(self, name: str, *args: str) -> Proc:
        return Proc(name, [sys.executable, "-m", "adapter", *args], env=self.env, cwd=self.cwd,
                    log=self.logs / f"{name}.log")

    def start(self, timeout: float = 60.0) -> None:
        self.supervisor.add(self._proc("api", "api", "--host", "127.0.0.1", "--port", str(self.port)))
        wait(lambda: self._ready(), timeout, "the API to answer /readyz")
        for name in self.workers:
            self.supervisor.add(self._proc(name, "worker"))
        wait(lambda: self.live_pumps() >= len(self.workers), timeout, "every worker's delivery pump")
        self.supervisor.watch()

    def _ready(self) -> bool:
        for name, proc in self.supervisor.procs.items():
            if proc.exited() is not None:
                raise RuntimeError(f"{name} exited ({proc.exited()}) while starting: see {proc.log}")
        try:
            return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def live_pumps(self) -> int:
        for name, proc in self.supervisor.procs.items():
            if proc.exited() is not None:
                raise RuntimeError(f"{name} exited ({proc.exited()}) while starting: see {proc.log}")
        client = self.store_client()
        try:
            since = time.time() * 1000 - 2000 * self.settings.delivery_lease
            return int(client.zcount(self.keys.delivery_pumps(), since, "+inf"))
        finally:
            client.close()

    def store_client(self) -> SyncRedis:
        return sync_redis(self.settings)

    def stop(self) -> None:
        self.supervisor.stop_all()


class Admin:
    """The admin, logged in through the v1 API."""

    def __init__(self, base: str, password: str) -> None:
        self.c = httpx.Client(base_url=base, timeout=10)
        token = self._data(self.c.post(f"{API}/auth/login", json={"user": "admin", "password": password}))["token"]
        self.c.headers["Authorization"] = f"Bearer {token}"

    @staticmethod
    def _data(r: httpx.Response) -> dict:
        if r.status_code != 200:
            raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")
        data: dict = r.json()["data"]
        return data

    def add_route(self, topic: str, url: str) -> str:
        made = self._data(self.c.post(f"{API}/msgroute/configs", json={"topic": topic, "name": "chaos", "url": url}))
        return f"route:{made['id']}"

    def add_callback(self, url: str) -> str:
        made = self._data(self.c.post(f"{API}/monitor/devices/callbacks", json={"type": "device", "url": url}))
        return f"callback:{made['id']}"

    def held(self, target: str) -> int:
        kind, _, target_id = target.partition(":")
        return int(self._data(self.c.get(HEALTH[kind], params={"id": target_id}))["held"])

    def close(self) -> None:
        self.c.close()


def stuck(client: SyncRedis, keys: Keys, held: dict[str, int]) -> Stuck:
    """What the engine still holds: `held` (each target's health), the retry sets, the hold lists (held
    deliveries, and marks left on lists that hold nothing: they would hold the next delivery of their chain),
    and the entries of the delivery streams read but not acknowledged (pending) or never read (after the
    group's last delivered id). `where`: each key holding any of it, with its count."""
    where: dict[str, int] = {}
    for p in keys.shards():
        where[keys.delivery_retry(p)] = int(client.zcard(keys.delivery_retry(p)))
    retry = sum(where.values())
    entries = marks = pending = unread = 0
    for p in range(keys.stream_partitions):
        for hold in client.smembers(keys.delivery_holds(p)):
            listed = [str(x) for x in client.lrange(hold, 0, -1)]
            held_here = sum(x.startswith("{") for x in listed)
            entries += held_here
            marks += bool(listed) and not held_here
            where[str(hold)] = len(listed)
        stream = keys.delivery_stream(p)
        if not client.exists(stream):
            continue
        for group in client.xinfo_groups(stream):
            after = client.xrange(stream, "(" + str(group["last-delivered-id"]), "+", count=100_000) or []
            pending += int(group["pending"])
            unread += len(after)
            where[f"{stream} {group['name']}"] = int(group["pending"]) + len(after)
    return Stuck(held=held, retry=retry, hold_entries=entries, marks=marks, pending=pending, unread=unread,
                 where={k: n for k, n in where.items() if n})


def wait(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
