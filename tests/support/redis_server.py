"""A throwaway redis-server of a test's own, on a free port in a temporary directory, for faults that must not
touch the shared test server (READONLY, OOM, BUSY, MISCONF, pauses). Killed (and its directory removed) after."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import redis

from tests.support.servers import free_port, wait_for


@dataclass
class RedisServer:
    port: int
    dir: str
    client: redis.Redis
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextmanager
def redis_server(*args: str) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="redis-fault-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=10)
    try:
        wait_for(lambda: _pings(client) or proc.poll() is not None, what=f"redis-server on {port}")
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server {args} exited with {proc.returncode}")
        yield RedisServer(port, tmp, client, proc)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
