"""The sampler: every `ADAPTER_STATS_INTERVAL` seconds one API process (the lease holder) reads what the service
already counts and writes it into the current minute's slot of each series (series.py).

Nothing on a hot path changes: ingest counts into the metrics hash (flushed about once a second), lifecycle.lua
counts finished commands there, the delivery engine counts each target's succCount / failedCount (on Redis Cluster
per partition, summed by the targets' reads). The sampler only reads those totals and the device counts, and
writes one SETRANGE per series: a plain command on one key, so on Redis Cluster a pipeline of them goes to each
key's own slot (fleet series in `{meta}`, a target's in `{tgt}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping

from adapter.devices.reads import device_counts
from adapter.stats import series
from adapter.store import faults
from adapter.store.connections import Services
from adapter.store.keys import Keys
from adapter.store.metrics import read_summed
from adapter.store.types import AsyncRedis
from adapter.targets.callbacks import CallbackStore
from adapter.targets.records import Target
from adapter.targets.routes import RouteStore

log = logging.getLogger("adapter.stats")

EVENTS = 'ingest_events_total{type="'
MESSAGES = 'ingest_events_total{type="message.publish"}'
FINISHED = 'commands_finished_total{result="'
SUCCESS = 'commands_finished_total{result="success"}'


def fleet_values(counters: Mapping[str, str], online: int, targets: list[Target]) -> dict[str, int]:
    """The fleet series' samples from the metrics counters, the devices online and every target's counters."""
    def total(prefix: str) -> int:
        return sum(int(float(v)) for k, v in counters.items() if k.startswith(prefix))

    return {
        "devices.online": online,
        "ingest.events": total(EVENTS),
        "ingest.messages": int(float(counters.get(MESSAGES, 0))),
        "commands.succeeded": int(float(counters.get(SUCCESS, 0))),
        "commands.failed": total(FINISHED) - int(float(counters.get(SUCCESS, 0))),
        "deliveries.delivered": sum(t.succ_count for t in targets),
        "deliveries.failed": sum(t.failed_count for t in targets),
    }


def target_values(kind: str, targets: list[Target]) -> dict[tuple[str, int, str], int]:
    """(kind, id, field) -> sample of each target's series."""
    return {key: value for t in targets for key, value in (
        ((kind, t.id, "delivered"), t.succ_count), ((kind, t.id, "failed"), t.failed_count))}


async def sample(client: AsyncRedis, keys: Keys, now: float | None = None, opened: dict[str, int] | None = None
                 ) -> int:
    """One round: read the totals, write the current minute's slot of every series; answers how many. `opened`
    (series key -> minute) remembers the minutes this sampler has opened already: their slots get only their last
    sample (a minute it has not opened gets its whole slot, its first sample too)."""
    minute = series.minute_of(time.time() if now is None else now)
    opened = {} if opened is None else opened
    counters = await read_summed(client, [keys.metrics(), *(keys.metrics_in(p) for p in keys.shards())])
    online = (await device_counts(client, keys))["online"]
    routes, callbacks = await RouteStore(client, keys).all(), await CallbackStore(client, keys).all()
    writes: dict[str, int] = {keys.stats_series(name): value
                              for name, value in fleet_values(counters, online, [*routes, *callbacks]).items()}
    for kind, found in (("route", routes), ("callback", callbacks)):
        for (k, target_id, field), value in target_values(kind, list(found)).items():
            writes[keys.target_series(k, target_id, field)] = value
    async with client.pipeline(transaction=False) as pipe:
        for key, value in writes.items():
            offset, data = series.slot(minute, value, opens=opened.get(key) != minute)
            pipe.setrange(key, offset, data)
        await pipe.execute()
    opened.clear()
    opened.update(dict.fromkeys(writes, minute))
    return len(writes)


async def hold_lease(client: AsyncRedis, keys: Keys, me: str, ttl_ms: int) -> bool:
    """Whether this process samples now: it takes the lease when free, keeps it while it holds it."""
    if await client.set(keys.stats_lease(), me, nx=True, px=ttl_ms):
        return True
    if await client.get(keys.stats_lease()) != me:
        return False
    await client.pexpire(keys.stats_lease(), ttl_ms)
    return True


async def run(svc: Services, stop: asyncio.Event) -> None:
    """Samples every `stats_interval` s until `stop` is set (the first after one interval). Redis trouble is
    logged and the next round tries again; a bug is logged with its traceback, and the loop goes on (the charts
    are not worth an API process)."""
    interval = svc.settings.stats_interval
    me, ttl_ms = secrets.token_hex(8), int(interval * 3000)
    opened: dict[str, int] = {}
    while not await _stopped(stop, interval):
        try:
            if await hold_lease(svc.redis, svc.keys, me, ttl_ms):
                await sample(svc.redis, svc.keys, opened=opened)
            else:
                opened.clear()  # another process samples: what it opened is not known here
        except Exception as exc:  # see the docstring
            if faults.trouble(exc):
                log.warning("stats sample skipped: Redis: %s", exc)
            else:
                log.exception("stats sample failed")
    with contextlib.suppress(Exception):
        if await svc.redis.get(svc.keys.stats_lease()) == me:
            await svc.redis.delete(svc.keys.stats_lease())


async def _stopped(stop: asyncio.Event, wait: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), wait)
    return stop.is_set()
