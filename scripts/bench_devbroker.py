"""Benchmark the dev broker: MQTT connects/s and events/s posted to a local receiver.

Starts the dev broker as its own process (`python -m adapter_devtools.devbroker`) posting to a minimal
Starlette receiver on uvicorn (in this process, a thread), then:
  1. opens --clients raw MQTT connections at once and closes them (connects/s; 2 events each);
  2. one client publishes --messages QoS 0/1 messages (message.publish events/s).
Information only: prints numbers, asserts nothing.

    .venv/bin/python scripts/bench_devbroker.py [--clients 200] [--messages 5000] [--qos 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "bench-key", "bench-secret"


class Tally:
    def __init__(self) -> None:
        self.count = 0
        self.publishes = 0


def receiver(tally: Tally) -> tuple[uvicorn.Server, int]:
    async def events(request: Request) -> Response:
        body = await request.body()
        tally.count += 1
        tally.publishes += b'"message.publish"' in body
        return Response(status_code=200)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[Route("/emqx/events", events, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, int(sock.getsockname()[1])


def start_devbroker(webhook: str) -> tuple[subprocess.Popen[str], int, str]:
    env = {**os.environ, "ADAPTER_EMQX_API_KEY": KEY, "ADAPTER_EMQX_API_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "adapter_devtools.devbroker", "--mqtt-port", "0", "--api-port", "0",
                             "--webhook", webhook], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"MQTT on [\d.]+:(\d+), REST API on (\S+)/api/v5", line)
    if not found:
        proc.kill()
        raise SystemExit(f"dev broker did not start: {line!r}")
    return proc, int(found.group(1)), found.group(2)


def _utf8(s: str) -> bytes:
    return struct.pack("!H", len(s)) + s.encode()


def connect_packet(clientid: str) -> bytes:
    body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _utf8(clientid)
    return bytes([0x10, len(body)]) + body


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int) -> bytes:
    body = _utf8(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x30 | (qos << 1)]) + bytes(encoded) + body


async def open_client(port: int, clientid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect_packet(clientid))
    connack = await reader.readexactly(4)
    assert connack[3] == 0, connack
    return reader, writer


async def wait_until(predicate: object, timeout: float) -> float:
    started = time.monotonic()
    while not predicate() and time.monotonic() - started < timeout:  # type: ignore[operator]
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def bench_connects(port: int, clients: int, tally: Tally) -> None:
    before = tally.count
    started = time.monotonic()
    opened = await asyncio.gather(*(open_client(port, f"bench-{i}") for i in range(clients)))
    connect_time = time.monotonic() - started
    for _, writer in opened:
        writer.write(b"\xe0\x00")  # DISCONNECT
        writer.close()
    await wait_until(lambda: tally.count - before >= 2 * clients, 120)
    total = time.monotonic() - started
    print(f"connects: {clients} in {connect_time:.2f} s = {clients / connect_time:,.0f} connects/s")
    print(f"connect+disconnect events: {tally.count - before} posted in {total:.2f} s = "
          f"{(tally.count - before) / total:,.0f} events/s")


async def bench_publishes(port: int, messages: int, qos: int, tally: Tally) -> None:
    _reader, writer = await open_client(port, "bench-publisher")
    before = tally.publishes
    started = time.monotonic()
    for i in range(messages):
        writer.write(publish_packet(f"dma/report/bench/{i % 10}", b'{"n":%d}' % i, qos, i % 65535 + 1))
        if i % 100 == 99:
            await writer.drain()
    await writer.drain()
    sent = time.monotonic() - started
    await wait_until(lambda: tally.publishes - before >= messages, 300)
    total = time.monotonic() - started
    got = tally.publishes - before
    print(f"publishes: {messages} QoS {qos} sent in {sent:.2f} s; {got} message.publish events posted in "
          f"{total:.2f} s = {got / total:,.0f} events/s")
    writer.close()


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--clients", type=int, default=200)
    args.add_argument("--messages", type=int, default=5000)
    args.add_argument("--qos", type=int, choices=[0, 1], default=0)
    opts = args.parse_args()
    tally = Tally()
    server, receiver_port = receiver(tally)
    proc, mqtt_port, api = start_devbroker(f"http://127.0.0.1:{receiver_port}/emqx/events")
    try:
        asyncio.run(bench_connects(mqtt_port, opts.clients, tally))
        asyncio.run(bench_publishes(mqtt_port, opts.messages, opts.qos, tally))
        stats = httpx.get(f"{api}/devbroker/stats", auth=(KEY, SECRET)).json()
        print("dev broker counters:", {k: v for k, v in stats.items() if k.startswith("events.") and v})
    finally:
        proc.terminate()
        proc.wait(10)
        server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
