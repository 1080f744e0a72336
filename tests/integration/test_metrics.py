"""`GET /metrics`: ingest counters and request latency, summed over several API processes (ingest issue, item 6)."""

from __future__ import annotations

import json

import httpx

from adapter.app import create_app
from adapter.http.metrics import MetricsBuffer, render
from adapter.settings import Settings
from tests.conftest import INGEST_TOKEN
from tests.support.emqx import connected, sample
from tests.support.servers import serve, wait_for

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_processes_share_their_counters(settings: Settings) -> None:
    with serve(create_app(settings)) as a, serve(create_app(settings)) as b, \
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
