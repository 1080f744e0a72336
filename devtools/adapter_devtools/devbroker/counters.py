"""Counters: EMQX-named metrics (served at `/api/v5/metrics`) and the dev broker's own counters
(event delivery, connects; served at `/devbroker/stats`), plus the running maxima behind `/stats`.

Metrics EMQX has but the dev broker cannot observe stay at 0 (e.g. `packets.*`, `authorization.*`).
"""

from __future__ import annotations

from collections import Counter

METRIC_NAMES: tuple[str, ...] = (
    "bytes.received", "bytes.sent", "packets.received", "packets.sent", "packets.connect.received",
    "packets.connack.sent", "packets.connack.error", "packets.connack.auth_error",
    "packets.publish.received", "packets.publish.sent", "packets.publish.dropped",
    "packets.publish.auth_error", "messages.received", "messages.sent",
    "messages.qos0.received", "messages.qos0.sent", "messages.qos1.received", "messages.qos1.sent",
    "messages.qos2.received", "messages.qos2.sent", "messages.publish", "messages.dropped",
    "messages.dropped.no_subscribers", "messages.dropped.await_pubrel_timeout", "messages.forward",
    "messages.delayed", "messages.delivered", "messages.acked", "messages.persisted", "delivery.dropped",
    "delivery.dropped.no_local", "delivery.dropped.too_large", "delivery.dropped.qos0_msg",
    "delivery.dropped.queue_full", "delivery.dropped.expired", "client.connect", "client.connack",
    "client.connected", "client.authenticate", "client.auth.anonymous", "client.authorize",
    "client.subscribe", "client.unsubscribe", "client.disconnected", "session.created",
    "session.resumed", "session.takenover", "session.discarded", "session.terminated",
    "authorization.allow", "authorization.deny", "authorization.cache_hit", "authorization.cache_miss",
    "authentication.success", "authentication.success.anonymous", "authentication.failure",
)

STAT_NAMES: tuple[str, ...] = (
    "connections", "live_connections", "cluster_sessions", "channels", "sessions", "topics",
    "subscriptions", "subscriptions.shared", "subscribers", "suboptions", "retained", "delayed",
)

DEV_NAMES: tuple[str, ...] = (
    "events.posted", "events.retried", "events.dropped", "events.expired", "events.queue_full",
    "events.unsent", "events.abandoned", "connects", "connects.refused", "kicks",
)


class Counters:
    """Monotonic counters; one instance per running dev broker."""

    def __init__(self) -> None:
        self.metrics: Counter[str] = Counter()
        self.dev: Counter[str] = Counter()
        self.maxima: Counter[str] = Counter()

    def metric(self, name: str, n: int = 1) -> None:
        self.metrics[name] += n

    def count(self, name: str, n: int = 1) -> None:
        self.dev[name] += n

    def observe(self, stat: str, value: int) -> int:
        """Record a current value of a stat; returns its maximum so far."""
        self.maxima[stat] = max(self.maxima[stat], value)
        return self.maxima[stat]

    def metrics_view(self) -> dict[str, int]:
        return {name: self.metrics[name] for name in METRIC_NAMES}

    def dev_view(self) -> dict[str, int]:
        return {name: self.dev[name] for name in DEV_NAMES}
