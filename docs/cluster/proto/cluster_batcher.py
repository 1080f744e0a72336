"""Prototype: adapter/store/batcher.py for a Redis Cluster (study for issue 15; not project code).

Same contract as Batcher.submit(commands) plus the slot the commands belong to: `submit(commands, slot)`.
Every group of commands a request submits is single-slot (the hash-tag plan guarantees it: all keys of one
event carry the device's partition tag), so a group never has to be split.

One flush:
  1. group the pending submissions by the primary that owns their slot (NodesManager.slots_cache, which the
     redis-py cluster client keeps and refreshes), keeping submission order inside a node;
  2. write every node's packed bytes on one connection of that node, all nodes at once (asyncio.gather),
     reading each node's replies under one deadline;
  3. replies that are redirections are sent again, only those commands, in order:
       MOVED slot host:port  -> the slot map is stale: refresh it (NodesManager.initialize), resend;
       ASK slot host:port    -> the slot is migrating: send ASKING + the command to that node (map unchanged);
       TRYAGAIN              -> a multi-key script during a migration: wait a little, resend;
       NOSCRIPT              -> load every script on that node, resend (as today).
     A redirected command did nothing on the node that refused it, so resending it is exact; the commands
     of the group that did run are not sent again.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster

Commands = Sequence[bytes]
READ_TIMEOUT = 10.0
MAX_REDIRECTS = 5
ASKING = b"*1\r\n$6\r\nASKING\r\n"


class ScriptLike:
    sha: str
    script: str


def _noscript(value: Any) -> bool:
    return isinstance(value, redis.exceptions.NoScriptError) or (
        isinstance(value, redis.exceptions.ResponseError) and str(value).startswith("NOSCRIPT"))


class ClusterBatcher:
    def __init__(self, cluster: RedisCluster, scripts: Iterable[Any] = ()) -> None:
        self.cluster = cluster
        self.scripts = tuple(scripts)
        self._pending: list[tuple[Commands, int, asyncio.Future[list[Any]]]] = []
        self._flushing = False
        self.stats = {"flushes": 0, "moved": 0, "ask": 0, "tryagain": 0, "noscript": 0, "refreshes": 0}

    async def submit(self, commands: Commands, slot: int) -> list[Any]:
        if not commands:
            return []
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, slot, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._flush(batch)
        finally:
            self._flushing = False

    async def _flush(self, batch: list[tuple[Commands, int, asyncio.Future[list[Any]]]]) -> None:
        self.stats["flushes"] += 1
        # one flat list of (command bytes, slot); replies land at the same index
        flat: list[tuple[bytes, int]] = [(c, slot) for commands, slot, _ in batch for c in commands]
        try:
            replies = await self._execute(flat)
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        i = 0
        for commands, _, future in batch:
            if not future.done():
                future.set_result(replies[i:i + len(commands)])
            i += len(commands)

    async def _execute(self, flat: list[tuple[bytes, int]]) -> list[Any]:
        replies: list[Any] = [None] * len(flat)
        # (index, node, asking) still to send; first round: the slot map's owner, no ASKING
        todo = [(i, self._owner(slot), False) for i, (_, slot) in enumerate(flat)]
        for _ in range(MAX_REDIRECTS + 1):
            by_node: dict[str, tuple[ClusterNode, list[tuple[int, bool]]]] = {}
            for i, node, asking in todo:
                by_node.setdefault(node.name, (node, []))[1].append((i, asking))
            rounds = await asyncio.gather(*(self._send(node, [(flat[i][0], asking) for i, asking in items])
                                            for node, items in by_node.values()))
            again: list[tuple[int, ClusterNode | None, bool]] = []
            refresh = loaded = False
            for (node, items), got in zip(by_node.values(), rounds, strict=True):
                noscript_here = False
                for (i, _), reply in zip(items, got, strict=True):
                    if isinstance(reply, redis.exceptions.AskError) and not isinstance(
                            reply, redis.exceptions.MovedError):
                        self.stats["ask"] += 1
                        again.append((i, self._node(reply.host, reply.port), True))
                    elif isinstance(reply, redis.exceptions.MovedError):
                        self.stats["moved"] += 1
                        refresh = True
                        again.append((i, None, False))
                    elif isinstance(reply, redis.exceptions.TryAgainError):
                        self.stats["tryagain"] += 1
                        again.append((i, None, False))
                    elif _noscript(reply):
                        self.stats["noscript"] += 1
                        noscript_here = True
                        again.append((i, node, False))
                    else:
                        replies[i] = reply
                if noscript_here:
                    await self._load_scripts(node)
                    loaded = True
            if not again:
                return replies
            if refresh:
                self.stats["refreshes"] += 1
                await self.cluster.nodes_manager.initialize()
            elif not loaded:
                await asyncio.sleep(0.01)  # TRYAGAIN: the migration of that slot is under way
            todo = [(i, node if node is not None else self._owner(flat[i][1]), asking)
                    for i, node, asking in again]
        raise redis.exceptions.ClusterError("too many redirections")

    def _owner(self, slot: int) -> ClusterNode:
        return self.cluster.nodes_manager.get_node_from_slot(slot)

    def _node(self, host: str, port: int | str) -> ClusterNode:
        node = self.cluster.get_node(host=host, port=int(port))
        if node is None:  # a node the map does not know yet: learn the topology
            raise redis.exceptions.ClusterError(f"unknown node {host}:{port}")
        return node

    async def _send(self, node: ClusterNode, commands: list[tuple[bytes, bool]]) -> list[Any]:
        conn = node.acquire_connection()
        packed = b"".join((ASKING + c) if asking else c for c, asking in commands)
        expected = sum(2 if asking else 1 for _, asking in commands)
        try:
            await conn.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            async with asyncio.timeout(READ_TIMEOUT):
                for _ in range(expected):
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except redis.exceptions.ResponseError as exc:
                        replies.append(exc)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            node.release(conn)
        out, j = [], 0
        for _, asking in commands:
            if asking:
                j += 1  # the +OK of ASKING
            out.append(replies[j])
            j += 1
        return out

    async def _load_scripts(self, node: ClusterNode) -> None:
        for script in self.scripts:
            await self.cluster.execute_command("SCRIPT LOAD", script.script, target_nodes=node)

    async def load_scripts(self) -> None:
        for node in self.cluster.get_primaries():
            await self._load_scripts(node)


def by_node_counts(batcher: ClusterBatcher, slots: Iterable[int]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for s in slots:
        out[batcher._owner(s).name] += 1
    return dict(out)
