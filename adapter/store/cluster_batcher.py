"""The ingest batcher on a Redis Cluster (docs/cluster/plan.md §3): the contract of batcher.Batcher, routed by slot.

Every command goes to the primary that owns the slot of its first key (EVALSHA sha numkeys KEY1 …: KEY1; other
commands: their first argument). One flush groups the pending commands per node, keeping their order inside a
node, writes each node's packed bytes on one connection of that node, all nodes at once, one read deadline per
node. A reply that refuses the command is answered by sending that command again (a refused command did nothing;
the others of its submission ran and are not sent again):
  MOVED   the slot map is stale: refresh it, resend to the new owner;
  ASK     the slot is migrating: ASKING + the command to the named node (map unchanged);
  TRYAGAIN  a multi-key command during a migration: wait a little, resend;
  NOSCRIPT  load every script on that node, resend.
After MAX_ROUNDS rounds the waiters get a ClusterError. A node that cannot be reached fails the whole flush (every
waiter gets the error, as a lost connection does on one Redis) and the slot map is loaded again before the next
flush (a failover moves slots to another node).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from adapter.store import resp
from adapter.store.batcher import Coalescer, Commands, read_replies
from adapter.store.scripts import LuaScript

MAX_ROUNDS = 6
ASKING = b"*1\r\n$6\r\nASKING\r\n"
_SCRIPT_CALLS = (b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO", b"FCALL", b"FCALL_RO")


def first_key(command: bytes) -> bytes | None:
    """The key a packed command (resp.pack) is routed by; None for a command without keys."""
    args = resp.unpack(command, 4)
    if not args:
        return None
    if args[0].upper() in _SCRIPT_CALLS:
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    return args[1] if len(args) > 1 else None


def slot_of(command: bytes) -> int | None:
    key = first_key(command)
    return None if key is None else key_slot(key)


class ClusterBatcher(Coalescer):
    def __init__(self, cluster: RedisCluster, scripts: Iterable[LuaScript] = ()) -> None:
        super().__init__()
        self.cluster = cluster
        self.scripts = tuple(scripts)
        self._stale = False  # a node failed: load the slot map before the next flush
        self.stats = {"flushes": 0, "moved": 0, "ask": 0, "tryagain": 0, "noscript": 0, "refreshes": 0}

    async def _execute(self, groups: list[Commands]) -> list[list[Any]]:
        self.stats["flushes"] += 1
        replies = await self._route([c for commands in groups for c in commands])  # replies at the same index
        out, i = [], 0
        for commands in groups:
            out.append(replies[i:i + len(commands)])
            i += len(commands)
        return out

    async def _route(self, flat: list[bytes]) -> list[Any]:
        await self.cluster.initialize()  # a no-op once the slot map is loaded
        if self._stale:
            self._stale = False
            self.stats["refreshes"] += 1
            await self.cluster.nodes_manager.initialize()
        replies: list[Any] = [None] * len(flat)
        slots = [slot_of(c) for c in flat]
        todo: list[tuple[int, ClusterNode, bool]] = [(i, self._owner(s), False) for i, s in enumerate(slots)]
        for _ in range(MAX_ROUNDS):
            by_node: dict[str, tuple[ClusterNode, list[tuple[int, bool]]]] = {}
            for i, node, asking in todo:
                by_node.setdefault(node.name, (node, []))[1].append((i, asking))
            try:
                got = await asyncio.gather(*(self._send(node, [(flat[i], asking) for i, asking in items])
                                             for node, items in by_node.values()))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError):
                self._stale = True
                raise
            again: list[tuple[int, ClusterNode | None, bool]] = []
            refresh = wait = False
            for (node, items), node_replies in zip(by_node.values(), got, strict=True):
                noscript = False
                for (i, _), reply in zip(items, node_replies, strict=True):
                    if isinstance(reply, redis.exceptions.MovedError):  # (a subclass of AskError)
                        self.stats["moved"] += 1
                        refresh = True
                        again.append((i, None, False))
                    elif isinstance(reply, redis.exceptions.AskError):
                        self.stats["ask"] += 1
                        target = self.cluster.get_node(host=reply.host, port=int(reply.port))
                        refresh = refresh or target is None  # a node the map does not know: learn the topology
                        again.append((i, target, target is not None))
                    elif isinstance(reply, redis.exceptions.TryAgainError):
                        self.stats["tryagain"] += 1
                        wait = True
                        again.append((i, node, False))
                    elif _noscript(reply):
                        self.stats["noscript"] += 1
                        noscript = True
                        again.append((i, node, False))
                    else:
                        replies[i] = reply
                if noscript:
                    await self._load_scripts(node)
            if not again:
                return replies
            if refresh:
                self.stats["refreshes"] += 1
                await self.cluster.nodes_manager.initialize()
            if wait:
                await asyncio.sleep(0.01)  # TRYAGAIN: that slot's migration is under way
            todo = [(i, node if node is not None else self._owner(slots[i]), asking) for i, node, asking in again]
        raise redis.exceptions.ClusterError(f"too many redirections ({MAX_ROUNDS} rounds)")

    def _owner(self, slot: int | None) -> ClusterNode:
        if slot is None:  # a command without keys: any primary answers it
            return self.cluster.get_primaries()[0]
        return self.cluster.nodes_manager.get_node_from_slot(slot)

    async def _send(self, node: ClusterNode, commands: list[tuple[bytes, bool]]) -> list[Any]:
        conn = node.acquire_connection()
        packed = b"".join((ASKING + c) if asking else c for c, asking in commands)
        expected = sum(2 if asking else 1 for _, asking in commands)
        try:
            await conn.send_packed_command(packed, check_health=False)
            replies = await read_replies(conn, expected)
        except BaseException:
            await conn.disconnect()  # replies may be left unread on it
            raise
        finally:
            node.release(conn)
        out, j = [], 0
        for _, asking in commands:
            j += asking  # skip the +OK of ASKING
            out.append(replies[j])
            j += 1
        return out

    async def _load_scripts(self, node: ClusterNode) -> None:
        for script in self.scripts:
            await self.cluster.execute_command("SCRIPT LOAD", script.script, target_nodes=node)

    async def load_scripts(self) -> None:
        await self.cluster.initialize()
        for script in self.scripts:
            await self.cluster.script_load(script.script)  # redis-py sends SCRIPT LOAD to every primary


def _noscript(value: Any) -> bool:
    return isinstance(value, redis.exceptions.NoScriptError) or (
        isinstance(value, redis.exceptions.ResponseError) and str(value).startswith("NOSCRIPT"))
