"""`adapter dev`: the whole stack on the embedded default, as one process tree.

Redis (the configured one when it answers, else a `redis-server` started for the run), the dev broker,
the API and a worker. Prints the URLs, the admin login and how to start simulated devices. Ctrl-C or
SIGTERM stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from types import FrameType

import httpx
import redis

from adapter.settings import ConfigError, Settings, redact_url


def port_or_free(preferred: int) -> int:
    """`preferred` when it can be bound on loopback, else a free port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


@dataclass
class Stack:
    """The child processes of one `adapter dev` run, stopped together."""

    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    tmpdir: str | None = None

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def dead(self) -> str | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return f"{name} exited with {proc.returncode}"
        return None

    def stop(self, timeout: float = 10.0) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def start_redis(stack: Stack) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigError("no Redis answers and redis-server is not installed (apt-get install redis-server)")
    port = port_or_free(6380)
    stack.tmpdir = tempfile.mkdtemp(prefix="adapter-dev-")
    stack.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", stack.tmpdir], dict(os.environ))
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise ConfigError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return url


def wait_ready(stack: Stack, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        problem = stack.dead()
        if problem:
            raise ConfigError(problem)
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ConfigError(f"{url} did not become ready in {timeout:.0f} s")
        time.sleep(0.1)


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ADAPTER_REDIS_URL": settings.redis_url,
        "ADAPTER_KEY_PREFIX": settings.key_prefix,
        "ADAPTER_INGEST_TOKEN": settings.ingest_token,
        "ADAPTER_ADMIN_PASSWORD": settings.admin_password,
        "ADAPTER_EMQX_API_URL": settings.emqx_api_url,
        "ADAPTER_EMQX_API_KEY": settings.emqx_api_key,
        "ADAPTER_EMQX_API_SECRET": settings.emqx_api_secret,
        "ADAPTER_ALLOW_PRIVATE_URLS": "true" if settings.allow_private_urls else "false",
        "ADAPTER_DEV": "true",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def banner(settings: Settings, api: str, mqtt_port: int, broker_api: str) -> str:
    py = sys.executable
    return "\n".join([
        "",
        "adapter dev is running (Ctrl-C stops everything)",
        f"  API          {api}/iot/api/v1   (OpenAPI: {api}/iot/api/v1/openapi.json)",
        f"  API docs     {api}/iot/api/v1/docs   (Swagger UI)",
        f"  admin login  user admin, password {settings.admin_password}",
        f"               curl -s -X POST {api}/iot/api/v1/auth/login -H 'content-type: application/json' "
        f"-d '{{\"user\":\"admin\",\"password\":\"{settings.admin_password}\"}}'",
        f"  MQTT         mqtt://127.0.0.1:{mqtt_port}   (client id = device sn)",
        f"  broker API   {broker_api}   (key {settings.emqx_api_key}, secret {settings.emqx_api_secret})",
        f"  Redis        {redact_url(settings.redis_url)}",
        "  simulated devices:",
        f"    {py} -m adapter simulate --port {mqtt_port} --count 10",
        "",
    ])


def run(args: argparse.Namespace) -> int:
    base = Settings.from_env(dev=True)
    stack = Stack()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C stops everything even when started from a script's background job (a shell without job control
    # starts those with SIGINT ignored, and Python keeps an ignored SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        redis_url = base.redis_url if redis_answers(base.redis_url) else start_redis(stack)
        api_port, mqtt_port = port_or_free(args.port), port_or_free(args.mqtt_port)
        broker_port = port_or_free(args.broker_api_port)
        settings = base.with_overrides(
            redis_url=redis_url,
            ingest_token=base.ingest_token or secrets.token_hex(16),
            admin_password=base.admin_password or secrets.token_urlsafe(12),
            emqx_api_url=f"http://127.0.0.1:{broker_port}/api/v5",
            emqx_api_key=base.emqx_api_key or "dev-key",
            emqx_api_secret=base.emqx_api_secret or secrets.token_hex(12),
        )
        api = f"http://127.0.0.1:{api_port}"
        env = child_env(settings)
        py = sys.executable
        stack.start("devbroker", [py, "-m", "adapter", "devbroker", "--mqtt-port", str(mqtt_port),
                                  "--api-port", str(broker_port), "--webhook", f"{api}/emqx/events"], env)
        stack.start("api", [py, "-m", "adapter", "api", "--port", str(api_port)], env)
        stack.start("worker", [py, "-m", "adapter", "worker"], env)
        wait_ready(stack, f"{api}/readyz")
        wait_ready(stack, f"http://127.0.0.1:{broker_port}/api/v5/status")
        print(banner(settings, api, mqtt_port, f"http://127.0.0.1:{broker_port}/api/v5"), flush=True)
        while not (problem := stack.dead()):
            time.sleep(0.2)
        print(f"adapter dev: {problem}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # one stop at a time: a second Ctrl-C must not cut it short
        stack.stop()
