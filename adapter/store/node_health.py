"""How the Redis nodes answer, seen from this process (`GET /readyz`, `GET /metrics`): on a cluster every primary of
the slot map is PINGed at once, each within PROBE_S; when one does not answer the slot map is loaded again (a replica
may have taken over) and the primaries asked once more. Slots no primary serves are counted. On one Redis: the one
server. Nothing here raises for a node that does not answer: it says so."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster

from adapter.store.types import AsyncRedis

PROBE_S = 1.0
SLOTS = 16384


@dataclass(frozen=True)
class NodeProbe:
    node: str  # host:port
    up: bool
    seconds: float  # the PING's round trip (up), or how long it was waited for
    error: str = ""


@dataclass(frozen=True)
class Probe:
    nodes: list[NodeProbe]
    uncovered: int  # slots no primary serves (cluster)

    @property
    def ready(self) -> bool:
        return self.uncovered == 0 and bool(self.nodes) and all(n.up for n in self.nodes)

    def trouble(self) -> str:
        """What is not ready, in one line."""
        parts = [f"{n.node} ({n.error})" for n in self.nodes if not n.up]
        if self.uncovered:
            parts.append(f"{self.uncovered} slots without a primary")
        return "; ".join(parts) or "no Redis node known"


async def probe(client: AsyncRedis) -> Probe:
    if not isinstance(client, RedisCluster):
        kwargs = client.connection_pool.connection_kwargs
        return Probe([await _ping(f"{kwargs.get('host', 'unix')}:{kwargs.get('port', kwargs.get('path', ''))}",
                                  client.ping)], 0)
    try:
        async with asyncio.timeout(PROBE_S * 2):
            await client.initialize()  # a no-op while the slot map holds
    except Exception as exc:  # no seed answers
        return Probe([NodeProbe("cluster", False, PROBE_S * 2, _said(exc))], SLOTS)
    nodes = await _primaries(client)
    if not all(n.up for n in nodes):
        with contextlib.suppress(Exception):  # the probes below say what is wrong
            async with asyncio.timeout(PROBE_S * 2):
                await client.nodes_manager.initialize()
        nodes = await _primaries(client)
    return Probe(nodes, SLOTS - len(client.nodes_manager.slots_cache))


async def _primaries(client: RedisCluster) -> list[NodeProbe]:
    primaries = sorted({n.name: n for n in _serving(client)}.values(), key=lambda n: n.name)
    return list(await asyncio.gather(*(_ping(n.name, _pinger(n)) for n in primaries)))


def _serving(client: RedisCluster) -> list[ClusterNode]:
    """The primaries that serve a slot, by the slot map."""
    return [nodes[0] for nodes in client.nodes_manager.slots_cache.values() if nodes]


def _pinger(node: ClusterNode) -> Callable[[], Awaitable[Any]]:
    return lambda: node.execute_command("PING")


async def _ping(name: str, ping: Callable[[], Awaitable[Any]]) -> NodeProbe:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_S):
            await ping()
    except Exception as exc:
        return NodeProbe(name, False, time.perf_counter() - started, _said(exc))
    return NodeProbe(name, True, time.perf_counter() - started)


def _said(exc: BaseException) -> str:
    """Why a node counts as down, fit for a public probe's answer (no server text)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROBE_S:g} s"
    return type(exc).__name__
