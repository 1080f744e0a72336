"""Every Lua script the service runs, from one place: the source files (each beside the Python that calls it),
their sha, and one way to call a script that Redis may not have loaded (NOSCRIPT loads it and calls again).

Pipelines and the batcher load a script themselves (`pipeline_scripts` / `pipeline_scripts_sync`,
adapter/store/batcher.py); a lone call goes through `call`. On a Redis Cluster redis-py's pipelines cannot load
scripts (no `pipe.scripts`): `pipeline_scripts` loads them on every primary before the pipeline is sent.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from typing import Any

import redis
import redis.asyncio.cluster
import redis.cluster

from adapter.store.types import AsyncPipeline, AsyncRedis, SyncRedis


class LuaScript:
    """A script a redis-py pipeline can load before running it (it needs `sha` and `script`)."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()


def source(path: str) -> str:
    """A Lua file of the package, by its path under adapter/ (e.g. "delivery/fanout.lua")."""
    return files("adapter").joinpath(path).read_text(encoding="utf-8")


async def call(client: AsyncRedis, script: LuaScript, numkeys: int, *keys_and_args: Any) -> Any:
    """EVALSHA, loading the script first when Redis answers NOSCRIPT (restarted, or its cache flushed). On a
    cluster, redis-py routes the EVALSHA by its first key and SCRIPT LOAD goes to every primary, so the node
    that answered NOSCRIPT has it when the call is sent again (tests/integration/test_cluster_store.py)."""
    try:
        return await client.evalsha(script.sha, numkeys, *keys_and_args)
    except redis.exceptions.NoScriptError:
        await client.script_load(script.script)
        return await client.evalsha(script.sha, numkeys, *keys_and_args)


def queue_call(pipe: Any, script: LuaScript, numkeys: int, *keys_and_args: Any) -> None:
    """Queue EVALSHA of `script` on a pipeline (sync or asyncio, one Redis or cluster). redis-py's cluster pipelines
    refuse their `evalsha` method ("blocked in cluster mode"); the command itself is routed by its first key."""
    pipe.execute_command("EVALSHA", script.sha, numkeys, *keys_and_args)


async def pipeline_scripts(client: AsyncRedis, pipe: AsyncPipeline, *scripts: LuaScript) -> None:
    """Make sure `scripts` are loaded when `pipe` (of `client`) runs their EVALSHAs. One Redis: the pipeline checks
    and loads them as it executes (SCRIPT EXISTS, SCRIPT LOAD). Cluster: SCRIPT LOAD on every primary now (its
    pipelines cannot; a cache flushed between the two fails the pipeline with NOSCRIPT)."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        for script in scripts:
            await client.script_load(script.script)
        return
    for script in scripts:
        pipe.scripts.add(script)  # type: ignore[union-attr,arg-type]  # a plain Pipeline; it needs .sha and .script


def pipeline_scripts_sync(client: SyncRedis, pipe: redis.client.Pipeline | redis.cluster.ClusterPipeline,
                          *scripts: LuaScript) -> None:
    """`pipeline_scripts` for the sync clients (RQ jobs)."""
    if isinstance(client, redis.cluster.RedisCluster):
        for script in scripts:
            client.script_load(script.script)
        return
    for script in scripts:
        pipe.scripts.add(script)  # type: ignore[union-attr,arg-type]
