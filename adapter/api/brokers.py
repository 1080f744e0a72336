"""Broker monitoring (seed: "MQTT Monitoring"): stats, nodes, connections and sessions, read from EMQX."""

from __future__ import annotations

from typing import Any

from adapter.broker.client import broker_client, monitor_connections, monitor_nodes, monitor_sessions, monitor_stats
from adapter.http.endpoint import Call, Endpoint
from adapter.http.openapi import page_of
from adapter.http.validation import LIMIT, PAGE, Param

COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
TEXT: dict[str, Any] = {"type": "string"}
FLAG: dict[str, Any] = {"type": "boolean"}
TIME: dict[str, Any] = {"type": ["string", "null"], "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$",
                        "description": "UTC, YYYY-MM-DD HH:MM:SS"}

UPTIME: dict[str, Any] = {"type": "string",
                          "pattern": r"^((\d+ days,)?(\d+ hours, )?(\d+ minutes, )?\d+ seconds|undefined)$",
                          "description": "EMQX 3's text; undefined for a stopped node"}
TIME_OR_UNDEFINED: dict[str, Any] = {"type": "string",
                                     "pattern": r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}|undefined)$",
                                     "description": "UTC, YYYY-MM-DD HH:MM:SS; undefined when EMQX does not say"}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


STATS_SCHEMA = _object({
    "metrics": _object({name: COUNT for name in (
        "messageSentCount", "messageReceivedCount", "packetSentCount", "packetReceivedCount",
        "byteSentCount", "byteReceivedCount")}),
    "stats": _object({name: COUNT for name in ("nodeCount", "sessionCount", "connectionCount")}),
})

NODE_SCHEMA = _object({
    "datetime": TIME_OR_UNDEFINED, "node": TEXT, "node_status": TEXT, "otp_release": TEXT, "sysdescr": TEXT,
    "uptime": UPTIME,
    "version": TEXT, "role": TEXT, "connections": COUNT, "live_connections": COUNT,
})

NODES_SCHEMA = _object({"count": COUNT, "list": {"type": "array", "items": NODE_SCHEMA}})

CONNECTION_SCHEMA = _object({
    "clean_start": FLAG, "client_id": TEXT, "connected_at": TIME, "ipaddress": TEXT, "is_bridge": FLAG,
    "is_super": FLAG, "keepalive": COUNT, "mountpoint": TEXT, "node": TEXT,
    "peercert": {"type": "string", "enum": ["nossl", "undefined"]}, "port": COUNT, "proto_name": TEXT,
    "proto_ver": COUNT, "username": TEXT, "will_topic": TEXT, "zone": TEXT, "listener": TEXT,
})

SESSION_SCHEMA = _object({
    "awaiting_rel_len": COUNT, "binding": {"const": "local"}, "clean_start": FLAG, "client_id": TEXT,
    "created_at": TIME_OR_UNDEFINED, "deliver_msg": COUNT, "enqueue_msg": COUNT, "expiry_interval": COUNT,
    "heap_size": COUNT, "inflight_len": COUNT, "mailbox_len": COUNT, "max_awaiting_rel": COUNT,
    "max_inflight": COUNT, "max_mqueue": COUNT, "max_subscriptions": COUNT, "mqueue_dropped": COUNT,
    "mqueue_len": COUNT, "node": TEXT, "reductions": COUNT, "subscriptions_count": COUNT, "username": TEXT,
    "connected": FLAG,
})

FILTERS = (
    Param("client_id", description="only this client id (exact)"),
    Param("username", description="only this user name (exact)"),
    Param("like_client_id", description="only client ids that contain this (EMQX's like_clientid; the answer's "
                                        "`total` is then the least the page proves, EMQX does not count them)"),
)


async def broker_stats(call: Call) -> dict[str, Any]:
    return await monitor_stats(broker_client(call.svc))


async def broker_nodes(call: Call) -> dict[str, Any]:
    return await monitor_nodes(broker_client(call.svc))


async def broker_connections(call: Call) -> dict[str, Any]:
    q = call.query
    return await monitor_connections(broker_client(call.svc), q["page"], q["limit"], client_id=q["client_id"],
                                     username=q["username"], like_client_id=q["like_client_id"])


async def broker_sessions(call: Call) -> dict[str, Any]:
    q = call.query
    return await monitor_sessions(broker_client(call.svc), q["page"], q["limit"], client_id=q["client_id"],
                                  username=q["username"], like_client_id=q["like_client_id"])


ENDPOINTS = [
    Endpoint("GET", "/iot/api/v1/monitor/brokers/stats", broker_stats,
             "Message, packet and byte counters and node, session and connection counts of the EMQX cluster",
             access="view", response=STATS_SCHEMA, errors=(502,)),
    Endpoint("GET", "/iot/api/v1/monitor/brokers", broker_nodes, "The EMQX nodes",
             access="view", response=NODES_SCHEMA, errors=(502,)),
    Endpoint("GET", "/iot/api/v1/monitor/brokers/connections", broker_connections,
             "Connected MQTT clients, a page at a time", access="view", query=(PAGE, LIMIT, *FILTERS),
             response=page_of(CONNECTION_SCHEMA), errors=(502,)),
    Endpoint("GET", "/iot/api/v1/monitor/brokers/sessions", broker_sessions,
             "MQTT sessions (connected, and disconnected ones EMQX still keeps), a page at a time",
             access="view", query=(PAGE, LIMIT, *FILTERS), response=page_of(SESSION_SCHEMA), errors=(502,)),
]
