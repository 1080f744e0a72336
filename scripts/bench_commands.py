"""Benchmark remote control: one POST to N devices (10,000 by default), published through the dev broker.

Starts a private redis-server, the dev broker, the API (with the command endpoints) and a worker (its
command runner) as processes, and one MQTT subscriber on `dma/cmd/#` (QoS 1) standing in for N online
devices, so every publish is a 200. Then one POST with `publishNow: true` to N sns, and prints:
  - the time until the API answered (goal: at most 1 s for 10,000);
  - the time until the runner had all N published, EMQX answering 200 (goal: at most 10 s), and the
    publishes per second;
  - the time until the subscriber had received all N;
  - the latency of a single `publishNow` command (POST until published).
Information only: prints numbers, asserts nothing.

    .venv/bin/python scripts/bench_commands.py [--count 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import redis

ROOT = Path(__file__).resolve().parents[1]
PASSWORD, TOKEN, KEY, SECRET = "bench-admin-secret", "bench-ingest", "bench-key", "bench-secret"
URL = "/iot/api/v1/remotectl/commands"
SENT = 'commands_sends_total{outcome="sent"}'
API = """
import sys, uvicorn
from adapter.api import commands
from adapter.app import create_app
app = create_app()
if not any(getattr(r, "path", "") == commands.BASE for r in app.router.routes):
    app.router.routes[0:0] = [ep.route() for ep in commands.ENDPOINTS]
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.005) -> float:
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter() - started


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Subscriber:
    def __init__(self, port: int) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-devices",
                                  protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        wait(self.client.is_connected, 10, "the subscriber's connection")
        self.client.subscribe("dma/cmd/#", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.count += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start(procs: list[subprocess.Popen[bytes]], argv: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "wb") as out:
        procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
                                      start_new_session=True))


def sent(r: redis.Redis) -> int:
    return int(r.hget("iot:metrics", SENT) or 0)


def bench(count: int, api: httpx.Client, r: redis.Redis, sub: Subscriber) -> None:
    body = {"to": [{"sn": f"BENCH{i:06d}"} for i in range(count)], "command": "sh",
            "body": {"shcmd": "whoami"}, "publishNow": True, "maxRetries": 3, "expires": 600}
    before, received = sent(r), sub.count
    started = time.perf_counter()
    response = api.post(URL, json=body)
    answered = time.perf_counter() - started
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["data"]["to"]) == count
    wait(lambda: sent(r) - before >= count, 120, "every command published")
    published = time.perf_counter() - started
    wait(lambda: sub.count - received >= count, 120, "every command at the subscriber")
    delivered = time.perf_counter() - started
    print(f"POST to {count:,} devices: API answered in {answered:.3f} s (goal <= 1 s), "
          f"{len(response.content):,} bytes")
    print(f"all {count:,} published (EMQX 200) {published:.2f} s after the POST (goal <= 10 s): "
          f"{count / published:,.0f} publishes/s")
    print(f"all {count:,} received by the subscriber {delivered:.2f} s after the POST")


def single(api: httpx.Client, r: redis.Redis, rounds: int = 5) -> None:
    took = []
    for i in range(rounds):
        target = sent(r) + 1
        started = time.perf_counter()
        body = {"to": [{"sn": f"ONE{i}"}], "command": "sh", "publishNow": True}
        api.post(URL, json=body).raise_for_status()
        wait(lambda: sent(r) >= target, 10, "the single command published", interval=0.001)  # noqa: B023
        took.append(time.perf_counter() - started)
    print(f"one publishNow command, POST until published: median {sorted(took)[rounds // 2] * 1000:.0f} ms, "
          f"max {max(took) * 1000:.0f} ms over {rounds}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    opts = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    redis_port, api_port, mqtt_port, broker_port = free_port(), free_port(), free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADAPTER_REDIS_URL": redis_url,
           "ADAPTER_ADMIN_PASSWORD": PASSWORD, "ADAPTER_INGEST_TOKEN": TOKEN,
           "ADAPTER_EMQX_API_URL": f"http://127.0.0.1:{broker_port}/api/v5", "ADAPTER_EMQX_API_KEY": KEY,
           "ADAPTER_EMQX_API_SECRET": SECRET, "ADAPTER_DEV": "true"}
    procs: list[subprocess.Popen[bytes]] = []
    py = sys.executable
    try:
        start(procs, [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--dir", str(workdir)], env, workdir / "redis.log")
        r = redis.Redis.from_url(redis_url)
        wait(lambda: _pings(r), 10, "redis-server")
        api_url = f"http://127.0.0.1:{api_port}"
        start(procs, [py, "-m", "adapter", "devbroker", "--mqtt-port", str(mqtt_port),
                      "--api-port", str(broker_port), "--webhook", f"{api_url}/emqx/events"], env,
              workdir / "devbroker.log")
        start(procs, [py, "-c", API, str(api_port)], env, workdir / "api.log")
        start(procs, [py, "-m", "adapter", "worker"], env, workdir / "worker.log")
        wait(lambda: answers(f"{api_url}/readyz"), 30, "the API", 0.1)
        wait(lambda: answers(f"http://127.0.0.1:{broker_port}/api/v5/status"), 30, "the dev broker", 0.1)
        sub = Subscriber(mqtt_port)
        with httpx.Client(base_url=api_url, timeout=60) as api:
            login = api.post("/iot/api/v1/auth/login", json={"user": "admin", "password": PASSWORD})
            api.headers["Authorization"] = f"Bearer {login.json()['data']['token']}"
            single(api, r)
            bench(opts.count, api, r, sub)
        sub.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _pings(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.exceptions.ConnectionError:
        return False


if __name__ == "__main__":
    sys.exit(main())
