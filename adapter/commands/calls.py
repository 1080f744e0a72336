"""lifecycle.lua's calls by name: one function per mode builds its call (`COMMANDS.call`, by the names of the
script's header; each mode's own arguments as the comment above it names them, pinned by
tests/unit/test_command_calls.py). No other module spells a position.

Every call is of one partition `p` (0 on one Redis): its KEYS and prefixes are in the slot of shard_tag(p),
and every command the call names is of that partition (on the cluster its id carries it, and its device's
keys share the slot), so a call never crosses slots.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import redis.exceptions

from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.resp import Arg
from adapter.store.scripts import Script, ScriptCall
from adapter.store.types import AsyncRedis

COMMANDS = Script.load("commands/lifecycle.lua")
# KEYS: due (ids by when the runner looks at them next, ms), expiry, the index of every command, the metrics hash;
# ARGV: the prefixes of the command hash, its response, a device's active set, the per-sn index, the per-from index,
# the per-from-and-sn index; the mode and its own arguments (MODE_ARGS)
_CALL = COMMANDS.positional("due", "expiry", "all", "metrics", "cmd_prefix", "resp_prefix", "active_prefix",
                            "sn_prefix", "from_prefix", "from_sn_prefix", "mode", "mode_args")

# the names of each mode's ARGV from 8 on, as lifecycle.lua's comments name them (the test pins them)
MODE_ARGS: dict[str, tuple[str, ...]] = {
    "create": ("from", "command", "method", "d", "detached", "expires", "maxRetries", "publishNow", "onlyNew"),
    "claim": ("limit", "lease"),
    "record": ("ack", "send"),
    "respond": ("seen", "ttl", "id", "clientid", "ok", "answer"),
    "delivered": ("id", "clientid"),
    "wake": ("sn",),
    "cancel": ("id",),
    "prune": ("limit",),
}
CREATE_GROUP = ("id", "ordinal", "sn", "client")
RECORD_GROUP = ("id", "outcome", "at")


@functools.lru_cache(maxsize=1024)
def _partition(keys: Keys, p: int) -> tuple[str, ...]:
    """`_CALL`'s values before the mode, of partition `p`."""
    return (keys.commands_due(p), keys.commands_expiry(p), keys.commands(p), keys.metrics_in(p),
            keys.command_prefix(p), keys.command_response_prefix(p), keys.commands_active_prefix(p),
            keys.commands_of_sn_prefix(p), keys.commands_from_prefix(p), keys.commands_from_sn_prefix(p))


def mode_call(keys: Keys, p: int, mode: str, *args: Arg) -> ScriptCall:
    """Any mode by its name and positional ARGV from 8 on (the named builders below are what callers use)."""
    assert len(args) >= len(MODE_ARGS[mode]), mode
    return _CALL(*_partition(keys, p), mode, args)


def create_call(keys: Keys, p: int, common: Sequence[Arg], group: Sequence[Arg], *,
                only_new: bool = False) -> ScriptCall:
    """`common`: from, command, method, d, detached, expires, maxRetries, publishNow; `group`: flat
    (id, ordinal, sn, client hash key) of commands of partition `p`. `only_new` skips ids already written (a
    retried job)."""
    assert len(common) == len(MODE_ARGS["create"]) - 1 and len(group) % len(CREATE_GROUP) == 0
    return mode_call(keys, p, "create", *common, "1" if only_new else "0", *group)


def claim_call(keys: Keys, p: int, limit: int, lease_ms: int) -> ScriptCall:
    return mode_call(keys, p, "claim", limit, lease_ms)


def record_call(keys: Keys, p: int, ack_ms: int, send: str, outcomes: Sequence[tuple[str, str, int]]) -> ScriptCall:
    """`outcomes`: (id, sent | no_subscribers | retry | rejected, when to retry (ms) or 0). `send`: a token of this
    publish, the same each time the call is sent again (a send's outcome is applied once)."""
    return mode_call(keys, p, "record", ack_ms, send, *[v for row in outcomes for v in row])


def respond_call(keys: Keys, p: int, seen: str, ttl: int, cid: str, clientid: str, ok: bool,
                 answer: bytes) -> ScriptCall:
    return mode_call(keys, p, "respond", seen, ttl, cid, clientid, "1" if ok else "0", answer)


def delivered_call(keys: Keys, p: int, cid: str, clientid: str) -> ScriptCall:
    return mode_call(keys, p, "delivered", cid, clientid)


def wake_call(keys: Keys, sn: str) -> ScriptCall:
    return mode_call(keys, keys.shard(sn), "wake", sn)


def cancel_call(keys: Keys, p: int, cid: str) -> ScriptCall:
    return mode_call(keys, p, "cancel", cid)


def prune_call(keys: Keys, p: int, limit: int) -> ScriptCall:
    return mode_call(keys, p, "prune", limit)


async def run(client: AsyncRedis, call: ScriptCall) -> Any:
    """One call of lifecycle.lua, loading it first when Redis (the call's node) does not have it."""
    return await scripts.call(client, call)


def queue(pipe: Any, calls: Sequence[ScriptCall], *, load: bool = False) -> None:
    """Queue calls on a pipeline; with `load` (a MULTI on one Redis) the pipeline loads lifecycle.lua first
    should Redis lack it (one SCRIPT EXISTS more per execute; `run_many` reloads on NOSCRIPT instead)."""
    if load:
        pipe.scripts.add(COMMANDS)
    for call in calls:
        scripts.queue_call(pipe, call)


async def run_many(client: Any, calls: Sequence[ScriptCall]) -> list[Any]:
    """Several calls in one pipeline (on a cluster, one round trip to each primary at once); the calls a node
    refused with NOSCRIPT are sent again once the script is loaded (the others ran once)."""
    if len(calls) == 1:
        return [await run(client, calls[0])]
    out: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        async with client.pipeline(transaction=False) as pipe:
            queue(pipe, [calls[i] for i in todo])
            replies = await pipe.execute(raise_on_error=False) if todo else []
        todo = _settle(out, todo, replies)
        if not todo or attempt:
            break
        await client.script_load(COMMANDS.script)
    return _raised(out)


async def run_in_rounds(client: Any, calls: Sequence[ScriptCall], width: int) -> list[Any]:
    """`calls` `width` at a time (`run_many` each round): on one Redis (width 1) each call its own round trip, so
    other clients' commands (an API read) wait for one short call, never for a pipeline of them; on a cluster a round
    of one call per partition goes to every node at once."""
    out: list[Any] = []
    for start in range(0, len(calls), max(1, width)):
        out += await run_many(client, calls[start:start + max(1, width)])
    return out


def run_many_sync(client: Any, calls: Sequence[ScriptCall]) -> list[Any]:
    """`run_many` for a synchronous client (the RQ job)."""
    out: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        with client.pipeline(transaction=False) as pipe:
            queue(pipe, [calls[i] for i in todo])
            replies = pipe.execute(raise_on_error=False) if todo else []
        todo = _settle(out, todo, replies)
        if not todo or attempt:
            break
        client.script_load(COMMANDS.script)
    return _raised(out)


def _settle(out: list[Any], todo: list[int], replies: Sequence[Any]) -> list[int]:
    """Put the replies in place; answers the calls to send again (NOSCRIPT: they did nothing)."""
    for i, reply in zip(todo, replies, strict=True):
        out[i] = reply
    return [i for i in todo if isinstance(out[i], redis.exceptions.NoScriptError)]


def _raised(out: list[Any]) -> list[Any]:
    for reply in out:
        if isinstance(reply, Exception):
            raise reply
    return out
