"""Delivery HTTP clients compared in one run: `adapter.delivery.sender.Sender` (aiohttp behind the SSRF guard), a raw
aiohttp session and httpx.AsyncClient, each with C concurrent keep-alive POSTs of a signed 300-byte JSON body
for N seconds, against one local receiver in a separate process (a bare ASGI app under uvicorn, uvloop and
httptools, answering 204). Prints POSTs/s and client CPU per POST for each, on each event loop asked for.

    .venv/bin/python scripts/bench_http_clients.py [--seconds 5] [--concurrency 20] [--loops asyncio,uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx

from adapter.delivery import signing
from adapter.delivery.sender import Sender

RECEIVER_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
'''

Post = Callable[[], Awaitable[int]]


@dataclass
class Result:
    posts: int
    failures: int
    seconds: float
    cpu: float

    def line(self, name: str) -> str:
        rate = self.posts / self.seconds
        cpu_us = self.cpu / max(self.posts, 1) * 1e6
        return (f"{name:<28} {rate:8.0f} POSTs/s   client CPU {cpu_us:6.0f} µs/POST   "
                f"({self.posts} ok, {self.failures} failed)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver(port: int, workdir: str) -> subprocess.Popen[bytes]:
    Path(workdir, "bench_receiver.py").write_text(RECEIVER_APP)
    argv = [sys.executable, "-m", "uvicorn", "bench_receiver:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools",
            "--backlog", "1024"]
    proc = subprocess.Popen(argv, cwd=workdir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("receiver did not start")


async def drive(post: Post, concurrency: int, seconds: float) -> Result:
    for _ in range(concurrency):  # warm the pool
        await post()
    counts = [0, 0]
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            status = await post()
            counts[0 if 200 <= status < 300 else 1] += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(counts[0], counts[1], time.perf_counter() - t0, time.process_time() - cpu0)


async def with_sender(url: str, body: bytes, headers: dict[str, str], conc: int, seconds: float) -> Result:
    sender = Sender(allow_private=True, limit=conc)

    async def post() -> int:
        attempt = await sender.post(url, body, headers, 10.0)
        return attempt.status or 0

    try:
        return await drive(post, conc, seconds)
    finally:
        await sender.aclose()


async def with_aiohttp(url: str, body: bytes, headers: dict[str, str], conc: int, seconds: float) -> Result:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc), timeout=timeout) as session:

        async def post() -> int:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                return resp.status

        return await drive(post, conc, seconds)


async def with_httpx(url: str, body: bytes, headers: dict[str, str], conc: int, seconds: float) -> Result:
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits, timeout=10, follow_redirects=False) as client:

        async def post() -> int:
            resp = await client.post(url, content=body, headers=headers)
            return resp.status_code

        return await drive(post, conc, seconds)


CLIENTS = {"aiohttp via Sender": with_sender, "aiohttp raw session": with_aiohttp,
           "httpx.AsyncClient": with_httpx}


def run(loop: str, coro: Awaitable[Result]) -> Result:
    if loop == "uvloop":
        import uvloop
        return uvloop.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--loops", default="asyncio,uvloop")
    args = p.parse_args()

    body = (b'{"event":"client.connected","clientid":"dev-000001","username":"dev-000001","peername":'
            b'"10.0.0.1:50000","ts":1764000000000,"node":"emqx@127.0.0.1","pad":"' + b"x" * 120 + b'"}')
    key = signing.secret_bytes(signing.new_secret())
    headers = signing.headers(key, "msg_bench", int(time.time()), body)
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    with tempfile.TemporaryDirectory() as workdir:
        receiver = start_receiver(port, workdir)
        try:
            print(f"{args.concurrency} concurrent POSTs of {len(body)} bytes for {args.seconds:.0f} s each; "
                  f"receiver: uvicorn (uvloop, httptools) in its own process; {os.cpu_count()} CPUs")
            for loop in args.loops.split(","):
                for name, client in CLIENTS.items():
                    res = run(loop, client(url, body, headers, args.concurrency, args.seconds))
                    print(res.line(f"{name} [{loop}]"), flush=True)
        finally:
            receiver.terminate()
            receiver.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
