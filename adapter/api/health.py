"""Liveness and readiness probes, and the metrics."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from adapter.errors import AppError
from adapter.http.endpoint import Call, Endpoint
from adapter.http.metrics import render, summed
from adapter.store.connections import texts
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis


async def healthz(call: Call) -> dict[str, Any]:
    return {"alive": True}


async def readyz(call: Call) -> dict[str, Any]:
    try:
        await call.svc.redis.ping()
    except Exception:
        raise AppError("unavailable", "redis does not answer", headers={"Retry-After": "1"}) from None
    return {"redis": "ok"}


async def metrics(call: Call) -> Response:
    return Response(render(await read_metrics(call.svc.redis, call.svc.keys)), media_type="text/plain; version=0.0.4")


async def read_metrics(client: AsyncRedis, keys: Keys) -> dict[str, str]:
    """The shared counters; on the cluster also every partition's (`metrics_in(p)`, which scripts of one slot
    write), summed field by field. On one Redis: the one hash, as it is."""
    names = dict.fromkeys([keys.metrics(), *(keys.metrics_in(p) for p in keys.shards())])  # one on one Redis
    if len(names) == 1:
        return texts(await client.hgetall(keys.metrics()))
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(name)
        return summed(texts(h) for h in await pipe.execute())


ENDPOINTS = [
    Endpoint("GET", "/healthz", healthz, "The process is up", access="public", tag="ops",
             response={"type": "object", "required": ["alive"], "properties": {"alive": {"const": True}}}),
    Endpoint("GET", "/readyz", readyz, "Redis answers", access="public", tag="ops",
             response={"type": "object", "required": ["redis"], "properties": {"redis": {"const": "ok"}}}),
    Endpoint("GET", "/metrics", metrics, "Prometheus metrics, summed over every API process", access="public",
             tag="ops", media_type="text/plain"),
]
