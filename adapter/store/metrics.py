"""Prometheus metrics that are right across several API processes.

Counters and request-latency histograms are gathered per process and added to one Redis hash
(`Keys.metrics()`) about once a second and at shutdown (a failed flush keeps them for the next), so
`GET /metrics` on any process shows the sum over all of them, at most a second late. Scripts count into
`Keys.metrics_in(shard)`: the same hash on one Redis, one per shard on Redis Cluster, summed on read.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

import redis.exceptions

from adapter.store.types import AsyncRedis

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENCY = "http_request_duration_seconds"
_FIELD = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?$")

HELP = {
    "ingest_events_total": ("counter", "EMQX events received on /emqx/events, by type"),
    "ingest_rejected_total": ("counter", "events or device messages rejected, by reason"),
    "ingest_unavailable_total": ("counter", "events answered 503 (EMQX sends them again), by reason"),
    "peripherals_dropped_total": ("counter", "new peripherals not stored: their gateway has the most it may keep"),
    "peripherals_pruned_total": ("counter", "peripherals removed: their gateway had not reported them for too long"),
    LATENCY: ("histogram", "HTTP request latency by route, seconds"),
    "emqx_authn_total": ("counter", "EMQX HTTP authentication answers, by result"),
    "emqx_authz_total": ("counter", "EMQX HTTP authorization answers, by result and action"),
    "emqx_authn_redis_unavailable_total": ("counter", "authentications answered ignore: Redis did not answer"),
    "emqx_authn_busy_total": ("counter", "authentications answered ignore: too many secret checks waiting"),
    "reconcile_corrections_total": ("counter", "device presence corrected by reconciliation with EMQX, by new state"),
    "reconcile_skipped_total": ("counter", "reconciliation corrections dropped: a real event came first"),
    "retention_removed_total": ("counter", "clients (ADAPTER_DEVICE_RETENTION_DAYS) and ended rollouts "
                                            "(ADAPTER_ROLLOUT_RETENTION_DAYS) deleted by retention, by kind"),
    "jobs_runs_total": ("counter", "periodic RQ job runs, by job and result"),
}


EXTRA_HELP: dict[str, tuple[str, str]] = {}  # the gauges other modules add (adapter/stats/ops_gauges.py registers)


class MetricsBuffer:
    """Per-process counters and latency histograms, flushed into the shared hash."""

    def __init__(self) -> None:
        self._fields: dict[str, float] = defaultdict(float)
        # (method, route) -> observations per bucket (the last one +Inf), then their sum: cheap on the hot
        # path; the cumulative Prometheus fields are built when taken
        self._hist: dict[tuple[str, str], list[float]] = {}

    def inc(self, field: str, n: int = 1) -> None:
        self._fields[field] += n

    def observe(self, method: str, route: str, seconds: float) -> None:
        counts = self._hist.get((method, route))
        if counts is None:
            counts = self._hist[(method, route)] = [0.0] * (len(BUCKETS) + 2)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def take(self) -> dict[str, float]:
        fields, self._fields = self._fields, defaultdict(float)
        hist, self._hist = self._hist, {}
        for (method, route), counts in hist.items():
            labels = f'method="{method}",route="{route}"'
            running = 0.0
            for le, n in zip((*BUCKETS, "+Inf"), counts[:-1], strict=True):
                running += n
                fields[f'{LATENCY}_bucket{{{labels},le="{le}"}}'] += running
            fields[f"{LATENCY}_count{{{labels}}}"] += running
            fields[f"{LATENCY}_sum{{{labels}}}"] += counts[-1]
        return dict(fields)

    async def flush(self, client: AsyncRedis, key: str) -> None:
        fields = self.take()
        if not fields:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                for name, value in fields.items():
                    if name.startswith(f"{LATENCY}_sum"):
                        pipe.hincrbyfloat(key, name, value)
                    else:
                        pipe.hincrby(key, name, int(value))
                await pipe.execute()
        except redis.exceptions.RedisError:
            for name, value in fields.items():  # keep them for the next flush
                self._fields[name] += value

    async def run(self, client: AsyncRedis, key: str, every: float = 1.0) -> None:
        try:
            while True:
                await asyncio.sleep(every)
                await self.flush(client, key)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush(client, key))


def summed(hashes: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Several counter hashes as one (on Redis Cluster: the API's hash and each shard's, `Keys.metrics_in`)."""
    total: dict[str, float] = defaultdict(float)
    for fields in hashes:
        for name, value in fields.items():
            total[name] += float(value)
    return {name: str(int(v)) if v.is_integer() else repr(v) for name, v in total.items()}


async def read_summed(client: AsyncRedis, names: Iterable[str]) -> dict[str, str]:
    """The counter hashes `names` (the shared one, and on Redis Cluster each shard's), summed field by field."""
    unique = list(dict.fromkeys(names))
    async with client.pipeline(transaction=False) as pipe:
        for name in unique:
            pipe.hgetall(name)
        replies = await pipe.execute()
    hashes = [{str(k): str(v) for k, v in reply.items()} for reply in replies]
    return hashes[0] if len(hashes) == 1 else summed(hashes)


def render(fields: Mapping[str, str]) -> str:
    """The Prometheus text exposition of the shared hash."""
    by_metric: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for field, value in sorted(fields.items()):
        m = _FIELD.match(field)
        if not m:
            continue
        name = m.group(1)
        family = re.sub(r"_(bucket|count|sum)$", "", name) if name.startswith(LATENCY) else name
        by_metric[family].append((field, value))
    lines = []
    for family, samples in sorted(by_metric.items()):
        kind, text = HELP.get(family) or EXTRA_HELP.get(family, ("counter", family))
        lines += [f"# HELP {family} {text}", f"# TYPE {family} {kind}"]
        lines += [f"{field} {value}" for field, value in samples]
    return "\n".join(lines) + "\n"
