"""A lean HTTP/1.1 load generator for the benchmarks: N keep-alive connections over raw asyncio sockets,
each sending pre-built requests one after another and timing each answer. Cheap enough on the client side
that the server, not the generator, is what gets measured on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from adapter_devtools.httpwire import read_answer


@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self, name: str) -> str:
        return (f"{name:<22} {self.rate:9.0f} req/s   p50 {self.pct(0.5):6.2f} ms   p99 {self.pct(0.99):6.2f} ms"
                f"   ({self.requests} requests, statuses {dict(sorted(self.statuses.items()))})")


async def _connection(host: str, port: int, requests: Sequence[bytes], start: int, step: int,
                      deadline: float, out: Result, depth: int = 1) -> None:
    """One keep-alive connection: `depth` requests in flight (pipelined, as EMQX's HTTP connector sends them with
    `enable_pipelining`), each answered before a new one goes."""
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    sent: deque[float] = deque()

    def send_one() -> None:
        nonlocal i
        sent.append(time.perf_counter())
        writer.write(requests[i % len(requests)])
        i += step

    try:
        while len(sent) < depth:
            send_one()
        while sent:
            status = await read_answer(reader)
            out.latencies.append(time.perf_counter() - sent.popleft())
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.requests += 1
            if time.perf_counter() < deadline:
                send_one()
    finally:
        writer.close()


async def run_load(host: str, port: int, requests: Sequence[bytes], connections: int, seconds: float,
                   warmup: float = 1.0, depth: int = 1) -> Result:
    """Send `requests` round-robin over `connections` keep-alive connections for `seconds`, `depth` in flight on
    each."""
    if warmup:
        await run_load(host, port, requests, connections, warmup, warmup=0, depth=depth)
    out = Result(0, 0.0, [], {})
    t0 = time.perf_counter()
    deadline = t0 + seconds
    await asyncio.gather(*(_connection(host, port, requests, c, connections, deadline, out, depth)
                           for c in range(connections)))
    out.seconds = time.perf_counter() - t0
    return out


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f}, min {min(values):.0f}, max {max(values):.0f}"
