"""Fixtures for end-to-end tests with real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.conftest import store_env
from tests.support.servers import free_port, wait_for


def pids_with(marker: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and int(d.name) != os.getpid():
            found.append(int(d.name))
    return found


@pytest.fixture
def dev_stack(redis_db: redis.Redis, key_prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_dev_stack(tmp_path, key_prefix) as info:
        yield info


@contextmanager
def running_dev_stack(tmp_path: Path, prefix: str = "iot", settings: Mapping[str, str] | None = None
                      ) -> Iterator[dict[str, str]]:
    """`adapter dev` on free ports and the test Redis, until the block ends (then Ctrl-C, and every child gone):
    its URLs and logins as the banner printed them. `settings`: more ADAPTER_* variables for it (and its children)."""
    api, mqtt_port, broker = free_port(), free_port(), free_port()
    env = {**os.environ, **store_env(prefix), "PYTHONUNBUFFERED": "1", **(settings or {})}
    env.pop("ADAPTER_ADMIN_PASSWORD", None)
    log = open(tmp_path / "dev.log", "w+b")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "adapter", "dev", "--port", str(api), "--mqtt-port",
                             str(mqtt_port), "--broker-api-port", str(broker)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path)

    def banner() -> str | None:
        log.seek(0)
        text = log.read().decode(errors="replace")
        if proc.poll() is not None:
            raise AssertionError(f"adapter dev exited early:\n{text[-3000:]}")
        return text if "simulated devices:" in text else None

    text = wait_for(banner, timeout=60, interval=0.2, what="adapter dev's banner")
    password = re.search(r"admin login\s+user admin, password (\S+)", text)
    assert password is not None, text
    key = re.search(r"broker API\s+(\S+)\s+\(key (\S+), secret (\S+)\)", text)
    assert key is not None, text
    info = {"api": f"http://127.0.0.1:{api}", "mqtt": str(mqtt_port), "broker": str(broker),
            "password": password.group(1), "broker_api": key.group(1), "api_key": key.group(2),
            "api_secret": key.group(3)}
    assert f"mqtt://127.0.0.1:{mqtt_port}" in text and f"simulate --port {mqtt_port}" in text
    try:
        yield info
    finally:
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # what Ctrl-C does
                assert proc.wait(30) == 0
        finally:
            log.close()
        # nothing it started is left: the API, the worker and the dev broker named their ports
        wait_for(lambda: not pids_with(f"--port {api}") and not pids_with(f"--mqtt-port {mqtt_port}")
                 and not pids_with(f"--api-port {broker}"), timeout=15, what="every child to exit")
