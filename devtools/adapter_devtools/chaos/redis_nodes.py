"""redis-server processes of the suite's own, on ports 7600-7699 (picked free, the cluster bus port too; another
range with CHAOS_REDIS_PORTS=first-last, on a machine shared by several runs), each in a directory of its own, so
that they can be killed and started again on the same data."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from adapter_devtools.chaos.procs import Proc


def _ports(spec: str) -> range:
    first, _, last = spec.partition("-")
    return range(int(first), int(last or first) + 1)


PORTS = _ports(os.environ.get("CHAOS_REDIS_PORTS", "7600-7699"))
_taken: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server does: TIME_WAIT does not count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, *, bus: bool = False) -> list[int]:
    """`n` ports of PORTS nobody listens on (and, with `bus`, their cluster bus port +10000 neither)."""
    candidates = list(PORTS)
    random.shuffle(candidates)  # two runs at once rarely pick the same ones
    out = [p for p in candidates if p not in _taken and _bindable(p) and (not bus or _bindable(p + 10000))][:n]
    if len(out) < n:
        raise RuntimeError(f"fewer than {n} free ports in {PORTS.start}-{PORTS.stop - 1}")
    _taken.update(out)
    return out


def release_ports(ports: Sequence[int]) -> None:
    _taken.difference_update(ports)


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    return binary


def answers(client: redis.Redis) -> bool:
    """PING answers (not LOADING, not refused)."""
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


class RedisNode:
    def __init__(self, port: int, root: Path, logs: Path, args: Sequence[str]) -> None:
        self.port = port
        self.dir = root / f"redis-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                "--logfile", str(logs / f"redis-{port}.log"), *args]
        self.proc = Proc(f"redis-{port}", argv)
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                           decode_responses=True)

    def start(self, ready_within: float = 60.0) -> None:
        self.proc.start()
        self.wait_ready(ready_within)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while not answers(c):
                if self.proc.exited() is not None:
                    raise RuntimeError(f"redis-server on {self.port} exited ({self.proc.exited()})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} did not answer within {timeout} s")
                time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc.exited() is None and self.proc.popen is not None

    def kill(self) -> None:
        self.frozen = False
        self.proc.stop(signal.SIGKILL)

    def freeze(self) -> None:
        self.proc.send(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.proc.send(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        self.frozen = False
        self.proc.stop(signal.SIGKILL, timeout=10)
