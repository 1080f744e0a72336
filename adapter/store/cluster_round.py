"""One round trip to every node: commands packed as RESP on one connection per node, all nodes at once, the replies
parsed by one hiredis reader per connection (the cluster's sharded reads, adapter/devices/reads.py). A reply that
is an error (a slot moving, or a real one) is asked again through the client, which follows redirections and
raises what is a real error. On one Redis the commands share one connection."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from adapter.store.resp import Arg, pack
from adapter.store.types import AsyncRedis

Command = tuple[str, Sequence[Arg]]  # (the key that routes it, the command's words)


async def _send(conn: Any, commands: Sequence[Command], into: list[Any], at: Sequence[int]) -> None:
    """Write the commands packed on one connection, read the replies in order (an error reply in its place).
    The replies are parsed by one hiredis reader straight off the connection's stream: redis-py's per-reply
    read_response (a timeout context each) cost more than the round trip itself for a page's 100 HMGETs."""
    await conn.send_packed_command(b"".join(pack(*commands[i][1]) for i in at), check_health=False)
    parser = hiredis.Reader(replyError=redis.exceptions.ResponseError,
                            encoding="utf-8" if conn.encoder.decode_responses else None)
    stream = conn._reader
    async with asyncio.timeout(conn.socket_timeout or 10):
        for i in at:
            reply = parser.gets()
            while reply is False:
                data = await stream.read(65536)
                if not data:
                    raise redis.exceptions.ConnectionError("Redis closed the connection")
                parser.feed(data)
                reply = parser.gets()
            into[i] = reply


async def _on_node(node: Any, commands: Sequence[Command], into: list[Any], at: Sequence[int]) -> None:
    conn = node.acquire_connection()
    try:
        await _send(conn, commands, into, at)
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        node.release(conn)


async def cluster_round(r: AsyncRedis, commands: Sequence[Command]) -> list[Any]:
    """One round trip: every node's commands packed on one of its connections, all nodes at once. A reply that
    is a redirection (a slot moving) or any other error is answered again through the client, which follows
    redirections and raises what is a real error. On one Redis the commands share one connection."""
    replies: list[Any] = [None] * len(commands)
    if isinstance(r, RedisCluster):
        await r.initialize()  # a no-op once the slot map is known
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, (key, _) in enumerate(commands):
            node = r.nodes_manager.get_node_from_slot(key_slot(key.encode()))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        await asyncio.gather(*(_on_node(node, commands, replies, at) for node, at in by_node.values()))
    else:
        conn = await r.connection_pool.get_connection()
        try:
            await _send(conn, commands, replies, range(len(commands)))
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await r.connection_pool.release(conn)
    for i, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.ResponseError):
            replies[i] = await r.execute_command(*commands[i][1])
    return replies
