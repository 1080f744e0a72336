"""Publish-to-forward latency of a message route, end to end on the embedded default: a paho client publishes
through the dev broker, which posts to the ingest, which queues the deliveries, which a worker sends to a local
receiver. Runs `adapter dev` itself (its own ports, Redis DB 10, flushed).

    .venv/bin/python scripts/bench_route_latency.py [--rate 200] [--seconds 10]

Goal (routes issue): p99 ≤ 250 ms at moderate load. Baseline in the same run: the same publishes received by
a plain MQTT subscriber on the same broker (what the broker alone adds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import redis
import uvicorn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_receiver import answer, read_body

received: list[float] = []  # ms from publish to the route's receiver
subscribed: list[float] = []  # ms from publish to a plain MQTT subscriber (the baseline)
lock = threading.Lock()


async def receiver(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    now = time.time()
    sent = json.loads(json.loads(body)["payload"])["t"]
    with lock:
        received.append((now - sent) * 1000)
    await answer(send, b"{}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def subscriber(port: int, topic: str) -> mqtt.Client:
    """The baseline: a plain MQTT subscriber to the same messages on the same broker."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")
    ready = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        with lock:
            subscribed.append((now - json.loads(msg.payload)["t"]) * 1000)

    client.on_message = on_message
    client.on_subscribe = lambda *_a: ready.set()
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=0)
    client.loop_start()
    if not ready.wait(10):
        raise SystemExit("the baseline subscriber did not subscribe")
    return client


def figures(name: str, values: list[float], sent: int) -> str:
    return (f"{name:<44} {len(values)} of {sent} received; p50 {pct(values, 0.5):.1f} ms, "
            f"p99 {pct(values, 0.99):.1f} ms, max {max(values, default=float('nan')):.1f} ms")


def publish(port: int, rate: float, seconds: float, topic: str) -> int:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    n = int(rate * seconds)
    start = time.time()
    for i in range(n):
        client.publish(f"{topic}/{i % 10}", json.dumps({"t": time.time(), "i": i}), qos=0)
        time.sleep(max(0.0, start + (i + 1) / rate - time.time()))
    client.loop_stop()
    client.disconnect()
    return n


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, default=200, help="messages/s")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = p.parse_args()
    redis.Redis.from_url(args.redis_url).flushdb()

    rec_port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, port=rec_port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    api, mqtt_port, broker = free_port(), free_port(), free_port()
    env = dict(os.environ, ADAPTER_REDIS_URL=args.redis_url, PYTHONUNBUFFERED="1")
    dev = subprocess.Popen([sys.executable, "-m", "adapter", "dev", "--port", str(api), "--mqtt-port", str(mqtt_port),
                            "--broker-api-port", str(broker)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        text = ""
        assert dev.stdout is not None
        while "simulated devices:" not in text:
            line = dev.stdout.readline()
            if not line:
                raise SystemExit("adapter dev did not start")
            text += line
        password = re.search(r"password (\S+)", text).group(1)  # type: ignore[union-attr]
        with httpx.Client(base_url=f"http://127.0.0.1:{api}") as c:
            token = c.post("/iot/api/v1/auth/login", json={"user": "admin", "password": password}).json()
            c.headers["Authorization"] = f"Bearer {token['data']['token']}"
            r = c.post("/iot/api/v1/msgroute/configs",
                       json={"topic": "bench/lat/#", "name": "latency", "url": f"http://127.0.0.1:{rec_port}/hook"})
            assert r.status_code == 200, r.text
        time.sleep(1.5)  # the route table follows within a second
        baseline = subscriber(mqtt_port, "bench/lat/#")
        sent = publish(mqtt_port, args.rate, args.seconds, "bench/lat")
        deadline = time.time() + 30
        while (len(received) < sent or len(subscribed) < sent) and time.time() < deadline:
            time.sleep(0.2)
        baseline.loop_stop()
        baseline.disconnect()
        with lock:
            lat, base = list(received), list(subscribed)
        print(f"{sent} messages at {args.rate:.0f}/s, one publisher, publish time to arrival:")
        print(figures("baseline: a plain MQTT subscriber", base, sent))
        print(figures("route: broker, ingest, delivery engine, HTTP", lat, sent) + "   (goal p99 ≤ 250 ms)")
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(30)
        server.should_exit = True
        redis.Redis.from_url(args.redis_url).flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
