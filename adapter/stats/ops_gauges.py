"""The gauges `GET /metrics` adds to the shared counters, read from whatever Redis node answers (a node that does not
is reported, never a reason to fail): each Redis node's PING (store/node_health.py), this process's ingest batcher
per node (failed batches, MOVED, ASK; on a cluster), the delivery backlog (entries of the delivery streams the pumps
have not acknowledged: each stream's consumer-group lag plus its pending entries) and the held deliveries (every
target's `held`, summed over its partitions)."""

from __future__ import annotations

from typing import Any

from adapter.delivery.deliver import GROUP
from adapter.store.cluster_round import Command, reachable_round
from adapter.store.connections import Services
from adapter.store.keys import Keys
from adapter.store.metrics import EXTRA_HELP
from adapter.store.node_health import PROBE_S, probe
from adapter.store.types import AsyncRedis, as_int, as_text

KINDS = ("callback", "route")
HELP = {
    "redis_node_up": ("gauge", "1 when the Redis node (a primary serving slots, or the one Redis) answers PING"),
    "redis_node_ping_seconds": ("gauge", "the last PING's round trip to the Redis node, seconds"),
    "redis_node_errors_total": ("counter", "this process's ingest batches to the node that failed"),
    "redis_node_moved_total": ("counter", "this process's ingest commands the node answered MOVED"),
    "redis_node_ask_total": ("counter", "this process's ingest commands the node answered ASK"),
    "redis_slots_uncovered": ("gauge", "cluster slots no answering primary serves"),
    "metrics_unreadable_total": ("gauge", "counter hashes /metrics could not read now (their node does not answer)"),
    "delivery_backlog": ("gauge", "delivery stream entries the pumps have not acknowledged (lag + pending)"),
    "delivery_held": ("gauge", "deliveries held behind an earlier one of their chain, over every target"),
    "delivery_unreadable_total": ("gauge", "delivery keys /metrics could not read now (their node does not answer)"),
    "route_table_stale_total": ("counter", "this process's messages matched without the version check they were due "
                                           "(Redis did not answer it: route_table.py)"),
}
EXTRA_HELP.update(HELP)


async def gauges(svc: Services, unread: int) -> dict[str, str]:
    seen = await probe(svc.redis)
    out: dict[str, str] = {"metrics_unreadable_total": str(unread), "redis_slots_uncovered": str(seen.uncovered)}
    for n in seen.nodes:
        out[f'redis_node_up{{node="{n.node}"}}'] = "1" if n.up else "0"
        if n.up:
            out[f'redis_node_ping_seconds{{node="{n.node}"}}'] = f"{n.seconds:.6f}"
    ingest = svc.extras.get("ingest")
    per_node = getattr(getattr(ingest, "batcher", None), "per_node", None)
    if per_node is not None:
        for node, figures in per_node().items():
            for name, value in figures.items():
                out[f'redis_node_{name}_total{{node="{node}"}}'] = str(value)
    table = svc.extras.get("routes")
    if table is not None:
        out["route_table_stale_total"] = str(table.stale_matches)
    return out | await delivery(svc.redis, svc.keys)


async def delivery(client: AsyncRedis, keys: Keys) -> dict[str, str]:
    streams: list[Command] = [(keys.delivery_stream(p), ("XINFO", "GROUPS", keys.delivery_stream(p)))
                              for p in range(keys.stream_partitions)]
    indexes: list[Command] = [(keys.targets(kind), ("ZRANGE", keys.targets(kind), 0, -1)) for kind in KINDS]
    first = await reachable_round(client, [*streams, *indexes], PROBE_S)
    backlog = sum(_backlog(reply) for reply in first[:len(streams)])
    unread = sum(_unread(reply) for reply in first)
    held_of: list[Command] = []
    for kind, ids in zip(KINDS, first[len(streams):], strict=True):
        for target in ids if isinstance(ids, list) else []:
            name = f"{kind}:{as_text(target)}"
            held_of += [(keys.delivery_state(name, p), ("HGET", keys.delivery_state(name, p), "held"))
                        for p in keys.shards()]
    held = await reachable_round(client, held_of, PROBE_S)
    return {"delivery_backlog": str(backlog), "delivery_held": str(sum(max(0, as_int(h)) for h in held)),
            "delivery_unreadable_total": str(unread + sum(_unread(h) for h in held))}


def _backlog(reply: Any) -> int:
    """lag + pending of the pumps' group, from XINFO GROUPS (maps, or flat field lists in RESP2); 0 for a stream not
    made yet."""
    if not isinstance(reply, list):
        return 0
    for group in reply:
        if isinstance(group, dict):  # RESP3
            fields = {as_text(k): v for k, v in group.items()}
        else:
            fields = dict(zip(map(as_text, group[::2]), group[1::2], strict=False)) if isinstance(group, list) else {}
        if as_text(fields.get("name", "")) == GROUP:
            return max(0, as_int(fields.get("lag"))) + max(0, as_int(fields.get("pending")))
    return 0


def _unread(reply: Any) -> int:
    """1 for a command whose node failed or did not answer (an error reply that is an answer, e.g. a stream not made
    yet, counts 0)."""
    return int(isinstance(reply, Exception) and not _answered(reply))


def _answered(exc: Exception) -> bool:
    text = str(exc)
    return text.startswith(("ERR no such key", "NOGROUP"))
