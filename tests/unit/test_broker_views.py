"""EMQX 5 REST shapes (emqx/rest-api.md, EMQX v5.8.9) mapped to the seed's v1 monitoring fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapter.broker.views import (
    connection_view,
    node_view,
    nodes_view,
    page_total,
    page_view,
    seed_time,
    session_view,
    stats_view,
    uptime_text,
)

NOW = datetime(2024, 5, 6, 7, 8, 9, 999_000, tzinfo=UTC)

RUNNING_NODE: dict[str, Any] = {
    "node": "emqx@172.17.0.2", "node_status": "running", "role": "core", "version": "5.8.9",
    "edition": "Opensource", "uptime": 5120000, "connections": 1203, "live_connections": 1187,
    "cluster_sessions": 1250, "load1": 0.42, "load5": 0.37, "load15": 0.30, "max_fds": 1048576,
    "memory_total": "7.63G", "memory_used": "1.21G", "otp_release": "26.2.5-3/14.2.5",
    "process_available": 2097152, "process_used": 5120, "sys_path": "/opt/emqx", "log_path": "/opt/emqx/log",
}
STOPPED_NODE: dict[str, Any] = {"node": "emqx@172.17.0.3", "node_status": "stopped", "role": "core"}

STATS: dict[str, Any] = {
    "connections.count": 1203, "connections.max": 1300, "live_connections.count": 1187,
    "live_connections.max": 1250, "cluster_sessions.count": 1250, "cluster_sessions.max": 1300,
    "channels.count": 1203, "channels.max": 1300, "sessions.count": 1250, "sessions.max": 1300,
    "topics.count": 40, "topics.max": 41, "subscriptions.count": 2400, "subscriptions.max": 2500,
    "subscriptions.shared.count": 0, "subscriptions.shared.max": 0, "subscribers.count": 2400,
    "subscribers.max": 2500, "suboptions.count": 2400, "suboptions.max": 2500, "retained.count": 3,
    "retained.max": 3, "delayed.count": 0, "delayed.max": 0,
}
METRICS: dict[str, Any] = {
    "bytes.received": 9280059, "bytes.sent": 3315420, "packets.received": 101347, "packets.sent": 58174,
    "packets.connect.received": 1300, "messages.received": 66452, "messages.sent": 23247,
    "messages.dropped": 12, "client.connected": 1300, "session.created": 1290,
}

CLIENT: dict[str, Any] = {
    "clientid": "emqx-api-test:v1", "username": "emqx-api-test:v1", "node": "emqx@127.0.0.1",
    "connected": True, "connected_at": "2024-01-01T12:34:56.789+08:00",
    "created_at": "2024-01-01T12:34:50.001+08:00", "ip_address": "127.0.0.1", "port": 64594,
    "peerport": 64594, "listener": "tcp:default", "proto_name": "MQTT", "proto_ver": 4, "clean_start": True,
    "keepalive": 60, "expiry_interval": 7200, "is_bridge": False, "is_persistent": False, "durable": False,
    "is_expired": False, "mountpoint": None, "enable_authn": True, "client_attrs": {},
    "subscriptions_cnt": 2, "subscriptions_max": "infinity", "inflight_cnt": 1, "inflight_max": 32,
    "mqueue_len": 3, "mqueue_max": 1000, "mqueue_dropped": 4, "awaiting_rel_cnt": 5, "awaiting_rel_max": 100,
    "recv_oct": 49, "recv_cnt": 4, "recv_pkt": 4, "recv_msg": 0, "recv_msg.qos0": 0, "recv_msg.qos1": 0,
    "recv_msg.qos2": 0, "recv_msg.dropped": 0, "recv_msg.dropped.await_pubrel_timeout": 0,
    "send_oct": 20, "send_cnt": 4, "send_pkt": 4, "send_msg": 7, "send_msg.qos0": 7, "send_msg.qos1": 0,
    "send_msg.qos2": 0, "send_msg.dropped": 0, "send_msg.dropped.expired": 0,
    "send_msg.dropped.queue_full": 0, "send_msg.dropped.too_large": 0,
    "heap_size": 376, "mailbox_len": 0, "reductions": 203,
}
OFFLINE_SESSION: dict[str, Any] = {
    **CLIENT, "clientid": "gw-7", "username": None, "connected": False, "clean_start": False,
    "disconnected_at": "2024-01-01T13:00:00.000+08:00", "subscriptions_max": 10, "mqueue_max": "infinity",
}


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-01-01T12:34:56.789+08:00", "2024-01-01 04:34:56"),
    ("2024-01-01T00:10:00.000+08:00", "2023-12-31 16:10:00"),
    ("2024-01-01T12:34:56Z", "2024-01-01 12:34:56"),
    ("2024-01-01T12:34:56", "2024-01-01 12:34:56"),
    (1704083696789, "2024-01-01 04:34:56"),
    (NOW, "2024-05-06 07:08:09"),
    (None, None),
    ("not a time", None),
    (True, None),
])
def test_seed_time(value: Any, expected: str | None) -> None:
    assert seed_time(value) == expected


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0 seconds"),
    (45_999, "45 seconds"),
    (65_000, "1 minutes, 5 seconds"),
    (3_600_000, "1 hours, 0 minutes, 0 seconds"),
    (5_120_000, "1 hours, 25 minutes, 20 seconds"),
    ((86400 + 18 * 3600 + 45 * 60 + 1) * 1000, "1 days,18 hours, 45 minutes, 1 seconds"),  # the seed's
    (86_400_000 * 400, "400 days,0 hours, 0 minutes, 0 seconds"),
    (-5, "0 seconds"),
])
def test_uptime_text_is_emqx3s(ms: int, text: str) -> None:
    assert uptime_text(ms) == text


def test_stats_from_aggregated_stats_metrics_and_nodes() -> None:
    assert stats_view(STATS, METRICS, [RUNNING_NODE, STOPPED_NODE]) == {
        "metrics": {"messageSentCount": 23247, "messageReceivedCount": 66452, "packetSentCount": 58174,
                    "packetReceivedCount": 101347, "byteSentCount": 3315420, "byteReceivedCount": 9280059},
        "stats": {"nodeCount": 1, "sessionCount": 1250, "connectionCount": 1187},
    }


def test_stats_with_missing_keys_are_zero_and_fall_back_to_connections() -> None:
    view = stats_view({"connections.count": 9}, {"messages.sent": "many"}, [])
    assert view["stats"] == {"nodeCount": 0, "sessionCount": 0, "connectionCount": 9}
    assert set(view["metrics"].values()) == {0}


def test_running_node() -> None:
    assert node_view(RUNNING_NODE, NOW) == {
        "datetime": "2024-05-06 07:08:09", "node": "emqx@172.17.0.2", "node_status": "Running",
        "otp_release": "26.2.5-3/14.2.5", "sysdescr": "EMQX Opensource",
        "uptime": "1 hours, 25 minutes, 20 seconds", "version": "5.8.9", "role": "core",
        "connections": 1203, "live_connections": 1187,
    }


def test_stopped_node_has_no_nulls_where_emqx_says_nothing() -> None:
    view = node_view(STOPPED_NODE, NOW)
    assert view["node_status"] == "Stopped"
    assert view["sysdescr"] == "EMQX"
    assert view["uptime"] == view["version"] == view["otp_release"] == "undefined"
    assert view["role"] == "core"
    assert view["connections"] == view["live_connections"] == 0


# the seed's examples (seed/api-v1.txt, "Get MQTT broker node list", "Get session list"): each field's type
SEED_NODE: dict[str, Any] = {
    "datetime": "2018-09-12 10:42:57", "node": "emqx@127.0.0.1", "node_status": "Running",
    "otp_release": "R21/10.0.5", "sysdescr": "EMQ X Broker", "uptime": "1 days,18 hours, 45 minutes, 1 seconds",
    "version": "3.0",
}
SEED_SESSION: dict[str, Any] = {
    "awaiting_rel_len": 0, "binding": "local", "clean_start": True, "client_id": "emqx-api-test:v1",
    "created_at": "2018-09-12 10:42:57", "deliver_msg": 0, "enqueue_msg": 0, "expiry_interval": 7200,
    "heap_size": 376, "inflight_len": 0, "mailbox_len": 0, "max_awaiting_rel": 100, "max_inflight": 32,
    "max_mqueue": 1000, "max_subscriptions": 0, "mqueue_dropped": 0, "mqueue_len": 0, "node": "emqx@127.0.0.1",
    "reductions": 203, "subscriptions_count": 0, "username": "emqx-api-test:v1",
}
ADDED_TYPES = {"role": str, "connections": int, "live_connections": int, "connected": bool}


def _assert_seed_types(view: dict[str, Any], seed: dict[str, Any]) -> None:
    assert set(seed) <= set(view)
    for name, value in view.items():
        assert value is not None, f"{name} is null"
        assert type(value) is (type(seed[name]) if name in seed else ADDED_TYPES[name]), name


@pytest.mark.parametrize("node", [{}, STOPPED_NODE, {"node": None, "uptime": None, "connections": "x"},
                                  RUNNING_NODE], ids=["empty", "stopped", "nulls", "running"])
def test_node_fields_are_never_null_and_have_the_seeds_types(node: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    from adapter.api.brokers import NODE_SCHEMA

    view = node_view(node, NOW)
    _assert_seed_types(view, SEED_NODE)
    Draft202012Validator(NODE_SCHEMA).validate(view)


@pytest.mark.parametrize("client", [{}, {"clientid": "d1", "durable": True, "is_persistent": True},
                                    {k: None for k in CLIENT}, CLIENT], ids=["empty", "durable", "nulls", "full"])
def test_session_fields_are_never_null_and_have_the_seeds_types(client: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    from adapter.api.brokers import SESSION_SCHEMA

    view = session_view(client)
    _assert_seed_types(view, SEED_SESSION)
    assert view["enqueue_msg"] == 0
    Draft202012Validator(SESSION_SCHEMA).validate(view)


def test_nodes_view_counts() -> None:
    view = nodes_view([RUNNING_NODE, STOPPED_NODE], NOW)
    assert view["count"] == 2
    assert [n["node"] for n in view["list"]] == ["emqx@172.17.0.2", "emqx@172.17.0.3"]


def test_connection_has_the_seeds_fields() -> None:
    assert connection_view(CLIENT) == {
        "clean_start": True, "client_id": "emqx-api-test:v1", "connected_at": "2024-01-01 04:34:56",
        "ipaddress": "127.0.0.1", "is_bridge": False, "is_super": False, "keepalive": 60,
        "mountpoint": "undefined", "node": "emqx@127.0.0.1", "peercert": "nossl", "port": 64594,
        "proto_name": "MQTT", "proto_ver": 4, "username": "emqx-api-test:v1", "will_topic": "undefined",
        "zone": "undefined", "listener": "tcp:default",
    }


@pytest.mark.parametrize(("listener", "peercert"), [
    ("tcp:default", "nossl"), ("ws:default", "nossl"), ("ssl:default", "undefined"),
    ("wss:default", "undefined"), (None, "undefined"),
])
def test_peercert_follows_the_listener(listener: str | None, peercert: str) -> None:
    assert connection_view({**CLIENT, "listener": listener})["peercert"] == peercert


def test_connection_with_nulls_uses_undefined() -> None:
    view = connection_view({**CLIENT, "username": None, "mountpoint": "dev/", "connected_at": None})
    assert view["username"] == "undefined"
    assert view["mountpoint"] == "dev/"
    assert view["connected_at"] is None


def test_session_has_the_seeds_fields() -> None:
    assert session_view(CLIENT) == {
        "awaiting_rel_len": 5, "binding": "local", "clean_start": True, "client_id": "emqx-api-test:v1",
        "created_at": "2024-01-01 04:34:50", "deliver_msg": 7, "enqueue_msg": 0, "expiry_interval": 7200,
        "heap_size": 376, "inflight_len": 1, "mailbox_len": 0, "max_awaiting_rel": 100, "max_inflight": 32,
        "max_mqueue": 1000, "max_subscriptions": 0, "mqueue_dropped": 4, "mqueue_len": 3,
        "node": "emqx@127.0.0.1", "reductions": 203, "subscriptions_count": 2, "username": "emqx-api-test:v1",
        "connected": True,
    }


def test_offline_session() -> None:
    view = session_view(OFFLINE_SESSION)
    assert view["connected"] is False
    assert view["clean_start"] is False
    assert view["username"] == "undefined"
    assert view["max_subscriptions"] == 10
    assert view["max_mqueue"] == 0  # "infinity"


def test_a_sparse_durable_session_still_maps() -> None:
    view = session_view({"clientid": "d1", "durable": True, "is_persistent": True, "connected": False})
    assert view["client_id"] == "d1"
    assert view["created_at"] == "undefined"
    assert view["mqueue_len"] == 0 and view["node"] == "undefined"


@pytest.mark.parametrize(("page", "limit", "returned", "count", "hasnext", "total"), [
    (1, 100, 2, 2, False, 2),
    (3, 2, 1, 5, False, 5),
    (9, 2, 0, 5, False, 5),
    (1, 2, 2, None, True, 3),
    (3, 2, 1, None, False, 5),
    (4, 2, 0, None, False, 0),
])
def test_page_total(page: int, limit: int, returned: int, count: int | None, hasnext: bool,
                    total: int) -> None:
    assert page_total(page, limit, returned, count, hasnext) == total


def test_page_view() -> None:
    assert page_view([{"a": 1}], 2, 10, 11) == {"total": 11, "count": 1, "page": 2, "limit": 10,
                                                 "list": [{"a": 1}]}
