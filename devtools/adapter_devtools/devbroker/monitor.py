"""What `/nodes`, `/stats` and `/metrics` report: figures gathered from the running broker and host."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import sys
from typing import Any

from adapter_devtools.devbroker.broker import DevBroker
from adapter_devtools.devbroker.views import NodeFacts, node_info, stats_object


def _memory_total() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def current_stats(broker: DevBroker) -> dict[str, int]:
    rows = broker.channel_list()
    entries = [(f, s) for f, subs in broker.subscriptions.items() for s, _ in subs]
    return {
        "connections": len(rows),
        "live_connections": sum(row.connected for row in rows),
        "cluster_sessions": len(broker.sessions),
        "channels": len(rows),
        "sessions": len(broker.sessions),
        "topics": sum(1 for subs in broker.subscriptions.values() if subs),
        "subscriptions": len(entries),
        "subscribers": len(entries),
        "suboptions": len(entries),
        "retained": len(broker.retained_messages),
    }


def stats(broker: DevBroker) -> dict[str, int]:
    current = current_stats(broker)
    maxima = {name: broker.counters.observe(name, value) for name, value in current.items()}
    return stats_object(current, maxima)


def node_facts(broker: DevBroker, node: str) -> NodeFacts:
    current = current_stats(broker)
    load1, load5, load15 = os.getloadavg()
    return NodeFacts(
        node=node, uptime_ms=broker.uptime_ms(), connections=current["connections"],
        live_connections=current["live_connections"], sessions=current["sessions"],
        load=(round(load1, 2), round(load5, 2), round(load15, 2)),
        max_fds=resource.getrlimit(resource.RLIMIT_NOFILE)[0], memory_total=_memory_total(),
        memory_used=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        processes=len(asyncio.all_tasks()), runtime=f"Python {platform.python_version()}",
        sys_path=sys.prefix)


def nodes(broker: DevBroker, node: str) -> list[dict[str, Any]]:
    return [node_info(node_facts(broker, node))]
