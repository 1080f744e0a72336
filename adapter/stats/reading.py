"""Reading a series: its ring (one GET of one key, as bytes) and the points of a window (series.py)."""

from __future__ import annotations

import time
from typing import Any

from redis.client import NEVER_DECODE

from adapter.devices import presence_log
from adapter.errors import invalid, not_found
from adapter.stats import presence, series
from adapter.stats.series import DAY, METRICS, MINUTE, Metric
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis
from adapter.targets.repository import Targets

MAX_POINTS = 1440


async def ring(client: AsyncRedis, key: str) -> bytes | None:
    """The ring's bytes: the service's clients decode answers, a ring is binary (redis-py's own way, as DUMP)."""
    raw = await client.execute_command("GET", key, **{NEVER_DECODE: []})
    return bytes(raw) if raw is not None else None


def span(start: int | None, end: int | None, step: int, now: int) -> tuple[int, int]:
    """The window asked for: `end` defaults to now, `start` to an hour before it; both aligned down to `step`, at
    most a day apart and at most `MAX_POINTS` points."""
    end = now if end is None else end
    start = end - 3600 if start is None else start
    if step % MINUTE:
        raise invalid("step: must be a whole number of minutes (60, 300, 600, …)")
    if start > end:
        raise invalid("from: must not be after to")
    if end - start > DAY:
        raise invalid("from: must be at most a day (86400 s) before to")
    start, end = start - start % step, end - end % MINUTE
    if (end - start) // step + 1 > MAX_POINTS:
        raise invalid(f"step: too small for that window (at most {MAX_POINTS} points)")
    return start, end


async def read(client: AsyncRedis, keys: Keys, name: str, target_id: int | None, start: int, end: int,
               step: int, sn: str | None = None) -> dict[str, Any]:
    """The answer of `GET /stats/series`: the metric, its kind, the window and its points."""
    metric = METRICS[name]
    if metric.device:
        points = await _device_points(client, keys, metric, target_id, sn, start, end, step)
    else:
        if sn is not None:
            raise invalid(f"sn: only device.* series take an sn, not {name}")
        key = await _key(client, keys, metric, target_id)
        points = series.window(await ring(client, key), metric.kind, start, end, step)
    return {"metric": name, "id": target_id, "sn": sn, "kind": metric.kind.value, "from": start, "to": end,
            "step": step, "points": [[t, v] for t, v in points]}


async def _device_points(client: AsyncRedis, keys: Keys, metric: Metric, target_id: int | None, sn: str | None,
                         start: int, end: int, step: int) -> list[series.Point]:
    if target_id is not None:
        raise invalid(f"id: {metric.name} is a device's series: it takes an sn")
    if sn is None:
        raise invalid(f"sn: is required for {metric.name} (the device's sn)")
    known = await presence_log.transitions(client, keys, sn)
    if known is None:
        raise not_found(f"no device {sn}")
    return presence.online_share(known, start, end, step, int(time.time() * 1000))


async def _key(client: AsyncRedis, keys: Keys, metric: Metric, target_id: int | None) -> str:
    if metric.target is None:
        if target_id is not None:
            raise invalid(f"id: {metric.name} is the fleet's; only route.* and callback.* take an id")
        return keys.stats_series(metric.name)
    if target_id is None:
        raise invalid(f"id: is required for {metric.name} (the {metric.target}'s id)")
    targets = Targets(client, keys, metric.target, metric.target)
    if not await targets.exists(target_id):
        raise targets.missing()
    return keys.target_series(metric.target, target_id, metric.field)
