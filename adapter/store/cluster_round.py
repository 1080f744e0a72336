"""One round trip to every node: commands packed as RESP on one connection per node, every node's batch written
before any reply is read, the replies parsed by one hiredis reader per connection (the cluster's sharded reads,
adapter/devices/reads.py). A reply that is an error (a slot moving, or a real one) is asked again through the
client, which follows redirections and raises what is a real error. On one Redis the commands share one
connection.

Written by hand rather than through redis-py's connection methods: its send_packed_command wraps every write in
asyncio.wait_for (a task each, in Python 3.11), its read_response a timeout context per reply, and a gather of one
task per node on top: together more client CPU than the round trip itself on a 2-core machine. Here a round
writes to every node (non-blocking), then reads each node's replies in turn: the nodes work at once, no task is
made, and one deadline covers the whole round."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from adapter.store import resp
from adapter.store.resp import Arg
from adapter.store.slots import slot
from adapter.store.types import AsyncRedis

Command = tuple[str, Sequence[Arg] | bytes]  # (the key that routes it, its words or them packed: resp.KeyTemplate)
Batch = tuple[Any, Sequence[int]]  # (a connection, the indexes of the commands it carries)
DEFAULT_TIMEOUT = 10.0


def _packed(words: Sequence[Arg] | bytes) -> bytes:
    """RESP of the words, packed in C (a third of resp.pack's cost), or as the caller packed them."""
    if isinstance(words, bytes):
        return words
    packed: bytes = hiredis.pack_command(cast(Any, tuple(words)))  # its stub types a 1-tuple
    return packed


def _words(words: Sequence[Arg] | bytes) -> Sequence[Arg]:
    """The words of a command, read back when the caller packed them (the command's name as text: redis-py's
    cluster client looks its routing policy up by name)."""
    if not isinstance(words, bytes):
        return words
    name, *rest = resp.unpack(words)
    return [name.decode(), *rest]


async def _exchange(batches: Sequence[Batch], commands: Sequence[Command], into: list[Any]) -> None:
    """Write every batch on its connection, then read each connection's replies in order into `into` (an error
    reply in its place), all within the connections' socket timeout."""
    timeout = max((conn.socket_timeout or DEFAULT_TIMEOUT) for conn, _ in batches)
    async with asyncio.timeout(timeout):
        for conn, at in batches:
            if not conn.is_connected:
                await conn.connect()
            conn._writer.write(b"".join([_packed(commands[i][1]) for i in at]))
        for conn, _ in batches:
            await conn._writer.drain()  # returns at once unless a large batch filled the socket buffer
        for conn, at in batches:
            parser = hiredis.Reader(replyError=redis.exceptions.ResponseError,
                                    encoding="utf-8" if conn.encoder.decode_responses else None)
            stream = conn._reader
            for i in at:
                reply = parser.gets()
                while reply is False:
                    data = await stream.read(65536)
                    if not data:
                        raise redis.exceptions.ConnectionError("Redis closed the connection")
                    parser.feed(data)
                    reply = parser.gets()
                into[i] = reply


async def cluster_round(r: AsyncRedis, commands: Sequence[Command]) -> list[Any]:
    """One round trip: every node's commands packed on one of its connections, all nodes at once. A reply that
    is a redirection (a slot moving) or any other error is answered again through the client, which follows
    redirections and raises what is a real error. On one Redis the commands share one connection."""
    replies: list[Any] = [None] * len(commands)
    if not commands:
        return replies
    if isinstance(r, RedisCluster):
        await r.initialize()  # a no-op once the slot map is known
        owner = r.nodes_manager.get_node_from_slot
        by_slot: dict[int, list[int]] = {}
        for i, (key, _) in enumerate(commands):
            by_slot.setdefault(slot(key), []).append(i)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for s, at in by_slot.items():
            node = owner(s)
            by_node.setdefault(node.name, (node, []))[1].extend(at)
        held = [(node, node.acquire_connection(), sorted(at)) for node, at in by_node.values()]  # caller's order
        try:
            await _exchange([(conn, at) for _, conn, at in held], commands, replies)
        except BaseException:
            for _, conn, _ in held:
                await conn.disconnect()
            raise
        finally:
            for node, conn, _ in held:
                node.release(conn)
    else:
        conn = await r.connection_pool.get_connection()
        try:
            await _exchange([(conn, range(len(commands)))], commands, replies)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await r.connection_pool.release(conn)
    for i, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.ResponseError):
            replies[i] = await r.execute_command(*_words(commands[i][1]))
    return replies


async def reachable_round(r: AsyncRedis, commands: Sequence[Command], timeout: float) -> list[Any]:
    """`cluster_round` for what can be reached (GET /metrics): each node's commands in a round of their own, all nodes
    at once, each within `timeout`; the commands of a node that fails or does not answer in time answer that
    exception. Error replies stay as they are (nothing is asked again)."""
    replies: list[Any] = [None] * len(commands)
    pool = None if isinstance(r, RedisCluster) else r.connection_pool
    if not isinstance(r, RedisCluster):
        groups: list[tuple[Any, list[int]]] = [(None, list(range(len(commands))))]
    else:
        await r.initialize()
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, (key, _) in enumerate(commands):
            node = r.nodes_manager.get_node_from_slot(slot(key))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        groups = list(by_node.values())

    async def one(node: Any, at: list[int]) -> None:
        conn = node.acquire_connection() if pool is None else await pool.get_connection()
        try:
            async with asyncio.timeout(timeout):
                await _exchange([(conn, at)], commands, replies)
        except Exception as exc:
            await conn.disconnect()
            for i in at:
                replies[i] = exc
        finally:
            if pool is None:
                node.release(conn)
            else:
                await pool.release(conn)

    if commands:
        await asyncio.gather(*(one(node, at) for node, at in groups))
    return replies


async def read_group(r: AsyncRedis, stream: str, group: str, consumer: str, count: int, block_ms: int = 200) -> Any:
    """XREADGROUP of one stream's new entries (`>`), on one Redis or a cluster. On a cluster it goes straight to the
    node of the stream's slot: redis-py would otherwise ask a node for the keys of every XREADGROUP (COMMAND
    GETKEYS: its keys are "movable"), a round trip more per read, on one shared connection that its slot-map
    reloads close under concurrent reads (every partition's read failed when any node failed over)."""
    if not isinstance(r, RedisCluster):
        return await r.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    await r.initialize()  # a no-op while its slot map holds; loads it again after a connection error
    node = r.nodes_manager.get_node_from_slot(slot(stream))
    return await r.execute_command("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "BLOCK", block_ms,
                                   "STREAMS", stream, ">", target_nodes=node)
