"""The ingest batcher on a Redis Cluster (docs/cluster/plan.md §3): the contract of batcher.Batcher, routed by slot,
one lane per primary (cluster_lane.py).

Every command goes to the primary that owns the slot of its first key (EVALSHA sha numkeys KEY1 …: KEY1; other
commands: their first argument), into that node's lane: a node's commands keep their order, each node's batches
come and go on their own, under a deadline of their own. So a node that is dead or frozen fails or delays only the
commands of its slots (they answer the node's failure, as a Redis error in place of their reply: the ingest
answers 503 for those events); the other nodes' commands are answered as ever (docs/cluster.md, "Under faults").

A reply that refuses the command is answered by sending that command again (a refused command did nothing; the
others of its submission ran and are not sent again):
  MOVED   the slot moved: the slot map is patched for that slot (redis-py's move_slot), resent to the new owner;
  ASK     the slot is migrating: ASKING + the command to the named node (map unchanged);
  TRYAGAIN  a multi-key command during a migration: wait a little, resend;
  NOSCRIPT  handled by the lane: the scripts are loaded on that node and the command sent again.
After MAX_ROUNDS rounds the command answers a ClusterError. A node that fails (or a batch in flight over
cluster_lane.SLOW_S, or CLUSTERDOWN) asks for the slot map to be loaded again, in the background, at most every
REFRESH_S while some node is in trouble: once a replica is promoted, its slots' commands go to it, those still
waiting in the old primary's lane included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from adapter.store import resp
from adapter.store.batcher import READ_TIMEOUT, Commands, Confirm
from adapter.store.cluster_lane import Item, Lane
from adapter.store.scripts import Script

MAX_ROUNDS = 6
REFRESH_S = 0.5  # at most one slot-map reload per this while nodes are in trouble
_SCRIPT_CALLS = (b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO", b"FCALL", b"FCALL_RO")
log = logging.getLogger("adapter.store.cluster_batcher")
_REDIRECTS = (redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)


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


class ClusterBatcher:
    def __init__(self, cluster: RedisCluster, scripts: Iterable[Script] = (), confirm: Confirm | None = None) -> None:
        self.cluster = cluster
        self.scripts = tuple(scripts)
        self.confirm = confirm
        self.deadline = float(cluster.connection_kwargs.get("socket_timeout") or READ_TIMEOUT)  # per node batch
        self._lanes: dict[str, Lane] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._wanted = False  # a reload was asked for while one ran
        self._ready = False  # the client has loaded its slot map once
        self._stats = {"moved": 0, "ask": 0, "tryagain": 0, "refreshes": 0}

    @property
    def stats(self) -> dict[str, int]:
        lanes = self._lanes.values()
        return {**self._stats, "noscript": sum(lane.noscript for lane in lanes),
                "node_failures": sum(lane.failures for lane in lanes)}

    async def submit(self, commands: Commands) -> list[Any]:
        """Send `commands`; answer their replies once written, each in its place: an error reply, or the failure of
        its node, as an exception object (the other commands' replies stand)."""
        if not commands:
            return []
        if not self._ready:
            await self.cluster.initialize()
            self._ready = True
        slots = [slot_of(c) for c in commands]
        replies: list[Any] = [None] * len(commands)
        todo: list[tuple[int, ClusterNode | None, bool]] = [(i, None, False) for i in range(len(commands))]
        for _ in range(MAX_ROUNDS):
            sent = []
            for i, node, asking in todo:
                try:
                    lane = self._lane(node if node is not None else self._owner(slots[i]))
                except redis.exceptions.RedisError as exc:  # a slot no node serves
                    replies[i] = exc
                    continue
                sent.append((i, lane, lane.put(commands[i], slots[i], asking)))
            todo, wait = [], False
            for i, lane, future in sent:
                reply = await future
                redo = await self._redirect(reply, lane) if isinstance(reply, _REDIRECTS) else None
                if redo is None:
                    replies[i] = reply
                else:
                    wait = wait or isinstance(reply, redis.exceptions.TryAgainError)
                    todo.append((i, *redo))
            if not todo:
                return replies
            if wait:
                await asyncio.sleep(0.01)  # TRYAGAIN: that slot's migration is under way
        for i, _, _ in todo:
            replies[i] = redis.exceptions.ClusterError(f"too many redirections ({MAX_ROUNDS} rounds)")
        return replies

    async def _redirect(self, reply: Any, lane: Lane) -> tuple[ClusterNode | None, bool] | None:
        """Where a refused command goes again (node: None for its slot's owner; whether ASKING first), or None when
        `reply` is its answer."""
        if isinstance(reply, redis.exceptions.MovedError):  # (a subclass of AskError)
            self._stats["moved"] += 1
            lane.moved += 1
            await self.cluster.nodes_manager.move_slot(reply)
            return None, False
        if isinstance(reply, redis.exceptions.AskError):
            self._stats["ask"] += 1
            lane.ask += 1
            target = self.cluster.get_node(host=reply.host, port=int(reply.port))
            if target is None:  # a node the map does not know: learn the topology, then ask its owner
                await self.reload()
            return target, target is not None
        if isinstance(reply, redis.exceptions.TryAgainError):
            self._stats["tryagain"] += 1
            return None, False
        if isinstance(reply, redis.exceptions.ClusterDownError):
            self.trouble()
        return None

    def per_node(self) -> dict[str, dict[str, int]]:
        """This process's figures per node: batches that failed, MOVED and ASK answers (GET /metrics)."""
        return {name: {"errors": lane.failures, "moved": lane.moved, "ask": lane.ask}
                for name, lane in self._lanes.items()}

    def _owner(self, slot: int | None) -> ClusterNode:
        if slot is None:  # a command without keys: any primary answers it
            return self.cluster.get_primaries()[0]
        try:
            return self.cluster.nodes_manager.get_node_from_slot(slot)
        except redis.exceptions.SlotNotCoveredError as exc:
            raise redis.exceptions.ClusterDownError(f"CLUSTERDOWN {exc}") from None

    def _lane(self, node: ClusterNode) -> Lane:
        lane = self._lanes.get(node.name)
        if lane is None:
            lane = self._lanes[node.name] = Lane(node, self.scripts, self.deadline, lambda _: self.trouble(),
                                                 self.confirm)
        elif lane.node is not node:  # the map was loaded again with a new object for that address
            lane.node = node
        return lane

    def trouble(self) -> None:
        """A node failed or is slow: load the slot map again (in the background; see the module)."""
        if self._refresh is not None:
            self._wanted = True
            return
        self._refresh = asyncio.get_running_loop().create_task(self._refreshing())

    async def reload(self) -> None:
        """Load the slot map now (or wait for the reload under way), then move waiting commands to their owners."""
        if self._refresh is None:
            self.trouble()
        assert self._refresh is not None
        await asyncio.shield(self._refresh)

    async def _refreshing(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wanted = False
                self._stats["refreshes"] += 1
                try:
                    await self.cluster.nodes_manager.initialize()
                except Exception as exc:  # no node answers: the next trouble asks again
                    log.warning("cluster batcher: the slot map could not be loaded: %s: %s", type(exc).__name__, exc)
                self._reroute()
                if not (self._wanted or any(lane.slow(loop.time()) for lane in self._lanes.values())):
                    return
                await asyncio.sleep(REFRESH_S)
        finally:
            self._refresh = None

    def _reroute(self) -> None:
        """Commands waiting in a lane whose slot is now another node's go to that node's lane."""
        for lane in list(self._lanes.values()):
            by_owner: dict[str, tuple[ClusterNode, list[Item]]] = {}
            here = lane.node.name
            for item in lane.take(lambda item: self._owner_name(item.slot) not in (None, here)):  # noqa: B023
                owner = self._owner(item.slot)
                by_owner.setdefault(owner.name, (owner, []))[1].append(item)
            for owner, items in by_owner.values():
                self._lane(owner).give(items)

    def _owner_name(self, slot: int | None) -> str | None:
        """The name of the node serving `slot` now; None for a command without keys or a slot no node serves."""
        if slot is None:
            return None
        try:
            return self._owner(slot).name
        except redis.exceptions.RedisError:
            return None

    async def load_scripts(self) -> None:
        await self.cluster.initialize()
        self._ready = True  # (the ingest's first submits then enqueue without a wait: in the order they come)
        for script in self.scripts:
            await self.cluster.script_load(script.script)  # redis-py sends SCRIPT LOAD to every primary
