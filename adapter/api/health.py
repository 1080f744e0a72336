"""Liveness and readiness probes, and the metrics.

`/readyz` is ready when every Redis node that serves a slot answers (store/node_health.py), and says which do not.
`/metrics` answers whatever Redis does: the shared counters it can read (on a cluster, a shard on a node that does
not answer is left out and counted), each node's PING, this process's batcher figures per node, the delivery backlog
and the held deliveries (adapter/stats/ops_gauges.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response

from adapter.errors import AppError
from adapter.http.endpoint import Call, Endpoint
from adapter.stats.ops_gauges import gauges
from adapter.store import faults
from adapter.store.keys import Keys
from adapter.store.metrics import render, summed
from adapter.store.node_health import PROBE_S, probe
from adapter.store.types import AsyncRedis


async def healthz(call: Call) -> dict[str, Any]:
    return {"alive": True}


async def readyz(call: Call) -> dict[str, Any]:
    seen = await probe(call.svc.redis)
    if not seen.ready:
        raise AppError("unavailable", f"redis does not answer: {seen.trouble()}", headers={"Retry-After": "1"})
    return {"redis": "ok", "nodes": len(seen.nodes)}


async def metrics(call: Call) -> Response:
    counters, unread = await read_counters(call.svc.redis, call.svc.keys)
    fields = counters | await gauges(call.svc, unread)
    return Response(render(fields), media_type="text/plain; version=0.0.4")


async def read_metrics(client: AsyncRedis, keys: Keys) -> dict[str, str]:
    """The shared counters (`read_counters`) that can be read now."""
    return (await read_counters(client, keys))[0]


async def read_counters(client: AsyncRedis, keys: Keys) -> tuple[dict[str, str], int]:
    """The shared counters; on the cluster also every partition's (`metrics_in(p)`, which scripts of one slot
    write), summed field by field, each read by itself within PROBE_S: a hash on a node that does not answer is left
    out (the second value counts them). On one Redis: the one hash, as it is."""
    names = list(dict.fromkeys([keys.metrics(), *(keys.metrics_in(p) for p in keys.shards())]))
    replies = await asyncio.gather(*(_hgetall(client, name) for name in names), return_exceptions=True)
    for reply in replies:
        if isinstance(reply, BaseException) and not (isinstance(reply, Exception) and faults.trouble(reply)):
            raise reply
    hashes = [{str(k): str(v) for k, v in r.items()} for r in replies if isinstance(r, dict)]
    return summed(hashes), len(names) - len(hashes)


async def _hgetall(client: AsyncRedis, name: str) -> dict[Any, Any]:
    async with asyncio.timeout(PROBE_S):
        return dict(await client.hgetall(name))


ENDPOINTS = [
    Endpoint("GET", "/healthz", healthz, "The process is up", access="public", tag="ops",
             response={"type": "object", "required": ["alive"], "properties": {"alive": {"const": True}}}),
    Endpoint("GET", "/readyz", readyz, "Every Redis node that serves a slot answers (503 names those that do not)",
             access="public", tag="ops",
             response={"type": "object", "required": ["redis"],
                       "properties": {"redis": {"const": "ok"}, "nodes": {"type": "integer"}}}),
    Endpoint("GET", "/metrics", metrics, "Prometheus metrics, summed over every API process", access="public",
             tag="ops", media_type="text/plain"),
]
