"""Every Lua script the service runs, from one place: the source files (each beside the Python that calls it),
their sha, and one way to call a script that Redis may not have loaded (NOSCRIPT loads it and calls again).

Pipelines and the batcher load a script themselves (`pipe.scripts.add`, adapter/store/batcher.py); a lone call
goes through `call`.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from typing import Any

import redis

from adapter.store.types import AsyncRedis


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
