"""EMQX 5 REST shapes → the seed's v1 "MQTT Monitoring" fields (pure; docs/broker-mapping.md is the table).

The seed was written against EMQX 3, whose conventions the v1 fields keep: times as
"YYYY-MM-DD HH:MM:SS" (here in UTC), `uptime` as EMQX 3's text, "undefined" for a missing string,
0 for "no limit". Fields EMQX 5 no longer reports get a fixed value, said in the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

UNDEFINED = "undefined"
SEED_TIME = "%Y-%m-%d %H:%M:%S"
PLAIN_LISTENERS = ("tcp", "ws")
"""Listener types without TLS: their clients have no peer certificate ("nossl" in EMQX 3)."""

Json = Mapping[str, Any]


def seed_time(value: str | int | float | datetime | None) -> str | None:
    """RFC 3339 text (EMQX 5's REST form), epoch ms, or a datetime → "YYYY-MM-DD HH:MM:SS" in UTC."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            moment = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(SEED_TIME)


def uptime_text(ms: int) -> str:
    """EMQX 3's `emqx_sys:uptime/0`: "1 days,18 hours, 45 minutes, 1 seconds"; leading zero units left out."""
    seconds = max(ms, 0) // 1000
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    if days:
        return f"{days} days,{h} hours, {m} minutes, {s} seconds"
    if hours:
        return f"{h} hours, {m} minutes, {s} seconds"
    if minutes:
        return f"{m} minutes, {s} seconds"
    return f"{s} seconds"


def _count(value: Any) -> int | None:
    """A non-negative integer from EMQX, or None when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(int(value), 0)


def _number(record: Json, key: str) -> int:
    return _count(record.get(key)) or 0


def _limit(value: Any) -> int:
    """A maximum: "infinity" (EMQX 5) → 0, EMQX 3's "no limit"."""
    return _count(value) or 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else UNDEFINED


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def stats_view(stats: Json, metrics: Json, nodes: Sequence[Json]) -> dict[str, Any]:
    """`/stats` and `/metrics` (aggregated) and `/nodes` → the seed's brokers/stats `data`."""
    live = stats.get("live_connections.count", stats.get("connections.count"))
    return {
        "metrics": {
            "messageSentCount": _number(metrics, "messages.sent"),
            "messageReceivedCount": _number(metrics, "messages.received"),
            "packetSentCount": _number(metrics, "packets.sent"),
            "packetReceivedCount": _number(metrics, "packets.received"),
            "byteSentCount": _number(metrics, "bytes.sent"),
            "byteReceivedCount": _number(metrics, "bytes.received"),
        },
        "stats": {
            "nodeCount": sum(1 for n in nodes if n.get("node_status") == "running"),
            "sessionCount": _number(stats, "sessions.count"),
            "connectionCount": _count(live) or 0,
        },
    }


def node_view(node: Json, now: datetime) -> dict[str, Any]:
    """One `/nodes` entry. A stopped node has only node, node_status and role: the rest is "undefined" (text)
    or 0 (counts), never null, as the seed's types."""
    status = node.get("node_status")
    edition = node.get("edition")
    uptime = _count(node.get("uptime"))
    return {
        "datetime": seed_time(now) or UNDEFINED,
        "node": _text(node.get("node")),
        "node_status": status.capitalize() if isinstance(status, str) else "Unknown",
        "otp_release": _text(node.get("otp_release")),
        "sysdescr": f"EMQX {edition}" if isinstance(edition, str) else "EMQX",
        "uptime": uptime_text(uptime) if uptime is not None else UNDEFINED,
        "version": _text(node.get("version")),
        "role": _text(node.get("role")),
        "connections": _number(node, "connections"),
        "live_connections": _number(node, "live_connections"),
    }


def nodes_view(nodes: Sequence[Json], now: datetime) -> dict[str, Any]:
    return {"count": len(nodes), "list": [node_view(n, now) for n in nodes]}


def _peercert(listener: Any) -> str:
    kind = listener.split(":", 1)[0] if isinstance(listener, str) else ""
    return "nossl" if kind in PLAIN_LISTENERS else UNDEFINED


def connection_view(client: Json) -> dict[str, Any]:
    """One `/clients` entry → one seed connection."""
    return {
        "clean_start": client.get("clean_start") is True,
        "client_id": _text(client.get("clientid")),
        "connected_at": seed_time(client.get("connected_at")),
        "ipaddress": _text(client.get("ip_address")),
        "is_bridge": client.get("is_bridge") is True,
        "is_super": False,
        "keepalive": _number(client, "keepalive"),
        "mountpoint": _text(client.get("mountpoint")),
        "node": _text(client.get("node")),
        "peercert": _peercert(client.get("listener")),
        "port": _number(client, "port"),
        "proto_name": _text(client.get("proto_name")),
        "proto_ver": _number(client, "proto_ver"),
        "username": _text(client.get("username")),
        "will_topic": UNDEFINED,
        "zone": UNDEFINED,
        "listener": _text(client.get("listener")),
    }


def session_view(client: Json) -> dict[str, Any]:
    """One `/clients` entry (EMQX 5 lists sessions as clients) → one seed session."""
    return {
        "awaiting_rel_len": _number(client, "awaiting_rel_cnt"),
        "binding": "local",
        "clean_start": client.get("clean_start") is True,
        "client_id": _text(client.get("clientid")),
        "created_at": seed_time(client.get("created_at")) or UNDEFINED,
        "deliver_msg": _number(client, "send_msg"),
        "enqueue_msg": 0,  # no EMQX 5 counter (docs/broker-mapping.md)
        "expiry_interval": _number(client, "expiry_interval"),
        "heap_size": _number(client, "heap_size"),
        "inflight_len": _number(client, "inflight_cnt"),
        "mailbox_len": _number(client, "mailbox_len"),
        "max_awaiting_rel": _limit(client.get("awaiting_rel_max")),
        "max_inflight": _limit(client.get("inflight_max")),
        "max_mqueue": _limit(client.get("mqueue_max")),
        "max_subscriptions": _limit(client.get("subscriptions_max")),
        "mqueue_dropped": _number(client, "mqueue_dropped"),
        "mqueue_len": _number(client, "mqueue_len"),
        "node": _text(client.get("node")),
        "reductions": _number(client, "reductions"),
        "subscriptions_count": _number(client, "subscriptions_cnt"),
        "username": _text(client.get("username")),
        "connected": client.get("connected") is True,
    }


def page_total(page: int, limit: int, returned: int, count: int | None, hasnext: bool) -> int:
    """EMQX's `meta.count` when it gives one; else the least total this page proves."""
    if count is not None:
        return count
    if not returned:
        return 0
    return (page - 1) * limit + returned + (1 if hasnext else 0)


def page_view(items: list[dict[str, Any]], page: int, limit: int, total: int) -> dict[str, Any]:
    return {"total": total, "count": len(items), "page": page, "limit": limit, "list": items}
