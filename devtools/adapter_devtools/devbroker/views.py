"""REST response bodies for `/clients`, `/nodes`, `/stats`, as EMQX 5.8 formats them (pure).

`/clients` items: `format_channel_info/3` in `emqx_mgmt_api_clients.erl` — RFC3339 times with ms and
the node's offset, `null` for undefined, `disconnected_at` only when not connected, expiry in seconds.
Process-level figures EMQX has (heap_size, reductions, packet counts) are 0 here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapter_devtools.devbroker.channels import Channel
from adapter_devtools.devbroker.counters import STAT_NAMES


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class SessionFigures:
    subscriptions: int
    mqueue_len: int
    inflight: int


def client_item(row: Channel, node: str, figures: SessionFigures) -> dict[str, Any]:
    conn, info = row.conn, row.conn.info
    recv, send = conn.link.recv_msg, conn.link.send_msg
    item: dict[str, Any] = {
        "clientid": info.clientid, "username": info.username, "node": node,
        "connected": row.connected, "connected_at": rfc3339(info.connected_at),
        "created_at": rfc3339(conn.created_at),
        "ip_address": info.peerhost, "port": info.peerport, "peerport": info.peerport,
        "listener": "tcp:default", "proto_name": info.proto_name, "proto_ver": info.proto_ver,
        "clean_start": info.clean_start, "keepalive": info.keepalive,
        "expiry_interval": info.expiry_interval, "is_bridge": False, "is_persistent": False,
        "durable": False, "is_expired": False, "mountpoint": None, "enable_authn": True,
        "client_attrs": {},
        "subscriptions_cnt": figures.subscriptions, "subscriptions_max": "infinity",
        "inflight_cnt": figures.inflight, "inflight_max": 32,
        "mqueue_len": figures.mqueue_len, "mqueue_max": 1000, "mqueue_dropped": 0,
        "awaiting_rel_cnt": 0, "awaiting_rel_max": 100,
        "recv_oct": conn.link.recv_oct, "recv_cnt": 0, "recv_pkt": 0, "recv_msg": sum(recv),
        "recv_msg.qos0": recv[0], "recv_msg.qos1": recv[1], "recv_msg.qos2": recv[2],
        "recv_msg.dropped": 0, "recv_msg.dropped.await_pubrel_timeout": 0,
        "send_oct": conn.link.send_oct, "send_cnt": 0, "send_pkt": 0, "send_msg": sum(send),
        "send_msg.qos0": send[0], "send_msg.qos1": send[1], "send_msg.qos2": send[2],
        "send_msg.dropped": 0, "send_msg.dropped.expired": 0, "send_msg.dropped.queue_full": 0,
        "send_msg.dropped.too_large": 0,
        "heap_size": 0, "mailbox_len": 0, "reductions": 0,
    }
    if not row.connected and conn.disconnected_at is not None:
        item["disconnected_at"] = rfc3339(conn.disconnected_at)
    return item


@dataclass(frozen=True)
class ClientQuery:
    page: int = 1
    limit: int = 100
    clientids: tuple[str, ...] = ()
    usernames: tuple[str, ...] = ()
    conn_state: str | None = None
    clean_start: bool | None = None
    ip_address: str | None = None
    like_clientid: str | None = None
    like_username: str | None = None

    @property
    def fuzzy(self) -> bool:
        return self.like_clientid is not None or self.like_username is not None


def _bool(name: str, raw: str) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise ValueError(f"the {name} parameter expected type is boolean, but the value is {raw}")


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"the {name} parameter expected type is integer, but the value is {raw}") from None
    if not low <= value <= high:
        raise ValueError("page_limit_invalid")
    return value


def parse_client_query(params: list[tuple[str, str]]) -> ClientQuery:
    """Query string pairs -> ClientQuery; ValueError with EMQX's message on a bad value."""
    single = dict(params)
    state = single.get("conn_state")
    if state is not None and state not in ("connected", "idle", "disconnected"):
        raise ValueError(f"the conn_state parameter expected type is enum, but the value is {state}")
    return ClientQuery(
        page=_int("page", single.get("page", "1"), 1, 2**31),
        limit=_int("limit", single.get("limit", "100"), 1, 10000),
        clientids=tuple(v for k, v in params if k == "clientid"),
        usernames=tuple(v for k, v in params if k == "username"),
        conn_state=state,
        clean_start=_bool("clean_start", single["clean_start"]) if "clean_start" in single else None,
        ip_address=single.get("ip_address"),
        like_clientid=single.get("like_clientid"),
        like_username=single.get("like_username"),
    )


def _state(row: Channel) -> str:
    return "connected" if row.connected else "disconnected"


def selects(query: ClientQuery, row: Channel) -> bool:
    info = row.conn.info
    checks = (
        not query.clientids or info.clientid in query.clientids,
        not query.usernames or info.username in query.usernames,
        query.conn_state is None or query.conn_state == _state(row),
        query.clean_start is None or query.clean_start == info.clean_start,
        query.ip_address is None or query.ip_address == info.peerhost,
        query.like_clientid is None or query.like_clientid in info.clientid,
        query.like_username is None or query.like_username in (info.username or ""),
    )
    return all(checks)


def page_of(query: ClientQuery, items: list[dict[str, Any]]) -> dict[str, Any]:
    start = (query.page - 1) * query.limit
    meta: dict[str, Any] = {"page": query.page, "limit": query.limit,
                            "hasnext": len(items) > start + query.limit}
    if not query.fuzzy:
        meta["count"] = len(items)
    return {"data": items[start:start + query.limit], "meta": meta}


def stats_object(current: dict[str, int], maxima: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in STAT_NAMES:
        out[f"{name}.count"] = current.get(name, 0)
        out[f"{name}.max"] = max(maxima.get(name, 0), current.get(name, 0))
    return out


def kmg(n: float) -> str:
    """EMQX's `emqx_mgmt_util:kmg/1`: bytes as a short string (`"1.21G"`)."""
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


@dataclass(frozen=True)
class NodeFacts:
    node: str
    uptime_ms: int
    connections: int
    live_connections: int
    sessions: int
    load: tuple[float, float, float]
    max_fds: int
    memory_total: int
    memory_used: int
    processes: int
    runtime: str
    sys_path: str


def node_info(f: NodeFacts) -> dict[str, Any]:
    return {
        "node": f.node, "node_status": "running", "role": "core", "version": "5.8.9",
        "edition": "Opensource", "uptime": f.uptime_ms, "connections": f.connections,
        "live_connections": f.live_connections, "cluster_sessions": f.sessions,
        "load1": f.load[0], "load5": f.load[1], "load15": f.load[2], "max_fds": f.max_fds,
        "memory_total": kmg(f.memory_total), "memory_used": kmg(f.memory_used),
        "otp_release": f.runtime, "process_available": 2097152, "process_used": f.processes,
        "sys_path": f.sys_path, "log_path": f.sys_path,
    }
