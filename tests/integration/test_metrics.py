"""`GET /metrics`: ingest counters and request latency, summed over several API processes (ingest issue, item 6)."""

from __future__ import annotations

import json

import httpx

from adapter.settings import Settings
from adapter.store.metrics import MetricsBuffer, render
from tests.conftest import INGEST_TOKEN
from tests.support.emqx import connected, sample
from tests.support.servers import serve_api, wait_for

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_processes_share_their_counters(settings: Settings) -> None:
    with serve_api(settings) as a, serve_api(settings) as b, \
            httpx.Client(headers=AUTH) as c:
        c.post(f"{a}/emqx/events", content=json.dumps(connected("M1", 1000)))
        c.post(f"{b}/emqx/events", content=json.dumps(connected("M2", 1000)))
        c.post(f"{b}/emqx/events", content=json.dumps(sample("client_connack")))
        c.post(f"{a}/emqx/events", content=b"{broken")
        text = c.get(f"{a}/metrics").text
        wait_for(lambda: metric(c.get(f"{a}/metrics").text, 'ingest_events_total{type="client.connected"}') == 2,
                 what="counters flushed")
        text = c.get(f"{a}/metrics").text
        assert metric(text, 'ingest_events_total{type="unknown"}') == 1
        assert metric(text, 'ingest_rejected_total{reason="malformed"}') == 1
        assert "# TYPE ingest_events_total counter" in text
        route = 'http_request_duration_seconds_count{method="POST",route="/emqx/events"}'
        # latencies are flushed about once a second by each process; the sum covers both
        wait_for(lambda: metric(c.get(f"{b}/metrics").text, route) >= 4, timeout=10, what="latency flush")
        text = c.get(f"{b}/metrics").text
        assert "# TYPE http_request_duration_seconds histogram" in text
        inf = 'http_request_duration_seconds_bucket{method="POST",route="/emqx/events",le="+Inf"}'
        assert metric(text, inf) == metric(text, route)


def test_histogram_buckets_are_cumulative() -> None:
    rec = MetricsBuffer()
    rec.observe("GET", "/x", 0.003)
    rec.observe("GET", "/x", 0.3)
    fields = {k: str(v) for k, v in rec.take().items()}
    text = render(fields)
    assert metric(text, 'http_request_duration_seconds_bucket{method="GET",route="/x",le="0.001"}') == 0
    assert metric(text, 'http_request_duration_seconds_bucket{method="GET",route="/x",le="0.005"}') == 1
    assert metric(text, 'http_request_duration_seconds_bucket{method="GET",route="/x",le="0.5"}') == 2
    assert metric(text, 'http_request_duration_seconds_count{method="GET",route="/x"}') == 2
    assert rec.take() == {}


def test_metrics_show_the_redis_nodes_and_the_delivery_gauges(settings: Settings, keys: object) -> None:
    """Every node that serves a slot (or the one Redis) with its PING; the delivery backlog (an entry the pumps have
    not read: lag) and the held deliveries (a target's `held`, summed over its partitions)."""
    import redis as sync

    from adapter.store.connections import sync_redis
    from adapter.store.keys import Keys

    k = Keys.of(settings)
    r = sync_redis(settings)
    try:
        r.xgroup_create(k.delivery_stream(0), "pumps", id="$", mkstream=True)
        r.xadd(k.delivery_stream(0), {"d": "1"})
        r.xadd(k.delivery_stream(0), {"d": "2"})
        r.zadd(k.targets("route"), {"7": 7})
        for p in list(k.shards())[:2]:
            r.hset(k.delivery_state("route:7", p), "held", 3)
    finally:
        r.close()
    with serve_api(settings) as url, httpx.Client(base_url=url, headers=AUTH) as c:
        c.post("/emqx/events", content=json.dumps(connected("M1", 1000)))
        text = c.get("/metrics").text
    ups = [line for line in text.splitlines() if line.startswith("redis_node_up{")]
    assert len(ups) == (3 if settings.redis_cluster else 1) and all(line.endswith(" 1") for line in ups), ups
    assert metric(text, "delivery_backlog") == 2
    assert metric(text, "delivery_held") == (6 if settings.redis_cluster else 3)
    assert metric(text, "metrics_unreadable_total") == 0 and metric(text, "redis_slots_uncovered") == 0
    assert "# TYPE redis_node_up gauge" in text and "redis_node_ping_seconds{" in text
    if settings.redis_cluster:
        assert any(line.startswith("redis_node_errors_total{") for line in text.splitlines())
    del sync
