"""REST views (pure): `/clients` rows, query parsing, paging, stats objects, node info."""

from __future__ import annotations

import re
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from adapter_devtools.devbroker.channels import Channel, Conn
from adapter_devtools.devbroker.counters import STAT_NAMES
from adapter_devtools.devbroker.model import ConnInfo
from adapter_devtools.devbroker.views import (
    ClientQuery,
    NodeFacts,
    SessionFigures,
    client_item,
    kmg,
    node_info,
    page_of,
    parse_client_query,
    rfc3339,
    selects,
    stats_object,
)


def row(clientid: str, *, connected: bool = True, username: str | None = None, clean: bool = True) -> Channel:
    info = ConnInfo(clientid=clientid, username=username, peerhost="10.0.0.5", peerport=5000, sockhost="127.0.0.1",
                    sockport=1883, keepalive=60, clean_start=clean, connected_at=1717000000118,
                    expiry_interval=0 if clean else 7200)
    link = SimpleNamespace(recv_oct=10, send_oct=20, recv_msg=[1, 2, 0], send_msg=[0, 3, 0])
    conn = SimpleNamespace(info=info, link=link, created_at=1717000000100,
                           disconnected_at=None if connected else 1717000000999)
    return Channel(cast(Conn, conn), connected)


def test_rfc3339_has_milliseconds_and_an_offset() -> None:
    text = rfc3339(1717000000123)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.123[+-]\d\d:\d\d", text)
    assert datetime.fromisoformat(text).timestamp() == pytest.approx(1717000000.123)


def test_client_item_formats_like_emqx() -> None:
    item = client_item(row("c1", connected=False, clean=False), "n@h", SessionFigures(2, 5, 1))
    assert item["username"] is None and item["mountpoint"] is None
    assert item["connected"] is False and item["disconnected_at"] == rfc3339(1717000000999)
    assert item["expiry_interval"] == 7200 and item["subscriptions_cnt"] == 2 and item["mqueue_len"] == 5
    assert item["recv_msg"] == 3 and item["recv_msg.qos1"] == 2 and item["send_msg"] == 3
    assert item["ip_address"] == "10.0.0.5" and item["port"] == item["peerport"] == 5000
    assert "disconnected_at" not in client_item(row("c2"), "n@h", SessionFigures(0, 0, 0))


def test_query_parsing() -> None:
    query = parse_client_query([("page", "2"), ("limit", "5"), ("clientid", "a"), ("clientid", "b"),
                                ("conn_state", "connected"), ("clean_start", "false")])
    assert query == ClientQuery(page=2, limit=5, clientids=("a", "b"), conn_state="connected", clean_start=False)
    for bad in ([("limit", "0")], [("limit", "10001")], [("page", "x")], [("conn_state", "gone")],
                [("clean_start", "maybe")]):
        with pytest.raises(ValueError):
            parse_client_query(bad)


def test_filters() -> None:
    online, offline = row("dev-1", username="u1"), row("dev-2", connected=False, clean=False)
    assert selects(ClientQuery(clientids=("dev-1",)), online) and not selects(ClientQuery(clientids=("x",)), online)
    assert selects(ClientQuery(conn_state="disconnected"), offline)
    assert not selects(ClientQuery(conn_state="disconnected"), online)
    assert selects(ClientQuery(usernames=("u1",)), online) and not selects(ClientQuery(usernames=("u1",)), offline)
    assert selects(ClientQuery(like_clientid="v-2"), offline) and not selects(ClientQuery(like_username="u"), offline)
    assert selects(ClientQuery(clean_start=False), offline) and selects(ClientQuery(ip_address="10.0.0.5"), online)


def test_paging() -> None:
    items: list[dict[str, Any]] = [{"n": i} for i in range(5)]
    assert page_of(ClientQuery(page=1, limit=2), items) == {
        "data": items[:2], "meta": {"page": 1, "limit": 2, "count": 5, "hasnext": True}}
    assert page_of(ClientQuery(page=3, limit=2), items)["meta"]["hasnext"] is False
    assert page_of(ClientQuery(page=9, limit=2), items)["data"] == []
    assert "count" not in page_of(ClientQuery(like_clientid="x"), items)["meta"]


def test_stats_object_has_count_and_max_for_every_stat() -> None:
    body = stats_object({"connections": 3}, {"connections": 7, "topics": 2})
    assert set(body) == {f"{n}.{k}" for n in STAT_NAMES for k in ("count", "max")}
    assert (body["connections.count"], body["connections.max"], body["topics.max"]) == (3, 7, 2)


def test_kmg_and_node_info() -> None:
    assert (kmg(512), kmg(2048), kmg(3 * 1024**2), kmg(1.5 * 1024**3)) == ("512", "2.00K", "3.00M", "1.50G")
    facts = NodeFacts(node="n@h", uptime_ms=5, connections=2, live_connections=1, sessions=2, load=(0.1, 0.2, 0.3),
                      max_fds=1024, memory_total=2 * 1024**3, memory_used=1024**2, processes=9, runtime="Python",
                      sys_path="/x")
    info = node_info(facts)
    assert info["node_status"] == "running" and info["memory_total"] == "2.00G" and info["uptime"] == 5
