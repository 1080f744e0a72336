"""Presence in Redis: `presence.lua` applied with one EVALSHA per event, and its hash read back.

The caller names the key (from `adapter/store/keys.py`): the client's presence hash. The service itself runs
the script wrapped in device.lua (see devices/calls.py); this module runs it alone (`presence_call`), which is
how the tests hold it against the pure function, and it owns `script_argv`, which both use.

`queue_apply` only queues the command, so it works the same on a sync `redis.Redis` pipeline and on a
`redis.asyncio` pipeline (many events batched into one round trip, inside MULTI or not); on one Redis the
pipeline loads the script on the server when it is missing (as redis-py's own `Script` objects do). A cluster
pipeline cannot: `apply_now` loads it on every primary first (a caller with its own cluster pipeline does that).
`parse_reply` turns that command's result into a `Transition` or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import redis
import redis.asyncio

from adapter.devices.presence import PresenceState, Transition, ends_connection
from adapter.protocol.events import Connected, Disconnected
from adapter.store import scripts
from adapter.store.types import as_text

STATE_FIELDS = ("online", "connected_at", "ended_through", "version", "online_time", "offline_time")


PRESENCE_SCRIPT = scripts.Script.load("devices/presence.lua")


class Queue(Protocol):
    """What `queue_apply` needs: a redis-py pipeline, sync or asyncio (one Redis or cluster)."""

    def execute_command(self, *args: Any, **options: Any) -> Any: ...


PRESENCE_ARGV = ("kind", "clientid", "connected_at", "disconnected_at", "reason")  # device.lua's ARGV begin so
_PRESENCE = PRESENCE_SCRIPT.positional("client", *PRESENCE_ARGV)


def script_argv(ev: Connected | Disconnected) -> tuple[str, ...]:
    """presence.lua's ARGV (PRESENCE_ARGV)."""
    if isinstance(ev, Connected):
        return ("c", ev.clientid, str(ev.connected_at), "", "")
    kind = "d" if ends_connection(ev) else "k"
    connected_at = "" if ev.connected_at is None else str(ev.connected_at)
    return (kind, ev.clientid, connected_at, str(ev.disconnected_at), ev.reason)


def presence_call(key: str, ev: Connected | Disconnected) -> scripts.ScriptCall:
    """presence.lua alone: the client's presence hash `key`, then `script_argv`."""
    return _PRESENCE(key, *script_argv(ev))


def queue_apply(pipe: Queue, key: str, ev: Connected | Disconnected) -> None:
    """Queue the presence step for `ev` on `pipe`; its result goes through `parse_reply`."""
    if hasattr(pipe, "scripts"):  # one Redis: the pipeline loads the script when it is missing
        pipe.scripts.add(PRESENCE_SCRIPT)
    scripts.queue_call(pipe, presence_call(key, ev))


def parse_reply(reply: Any, clientid: str) -> Transition | None:
    if reply is None:
        return None
    online, time, reason, version, connected_at = reply
    return Transition(
        clientid=clientid, online=int(online) == 1, time=int(time), reason=as_text(reason),
        version=int(version), connected_at=int(connected_at) if connected_at not in ("", b"") else None,
    )


def apply_now(client: redis.Redis, key: str, ev: Connected | Disconnected) -> Transition | None:
    """Apply one event right away on a sync client."""
    with client.pipeline(transaction=False) as pipe:
        scripts.pipeline_scripts_sync(client, pipe, PRESENCE_SCRIPT)
        queue_apply(pipe, key, ev)
        [reply] = pipe.execute()
    return parse_reply(reply, ev.clientid)


async def apply_now_async(client: redis.asyncio.Redis, key: str,
                          ev: Connected | Disconnected) -> Transition | None:
    """Apply one event right away on an asyncio client."""
    async with client.pipeline(transaction=False) as pipe:
        await scripts.pipeline_scripts(client, pipe, PRESENCE_SCRIPT)
        queue_apply(pipe, key, ev)
        [reply] = await pipe.execute()
    return parse_reply(reply, ev.clientid)


def state_from_hash(mapping: Mapping[Any, Any]) -> PresenceState | None:
    """The state from the presence hash as HGETALL returns it (bytes or str); None when empty."""
    fields = {as_text(k): as_text(v) for k, v in mapping.items()}
    if not fields:
        return None
    ints = {name: int(fields[name]) if fields.get(name) else None for name in STATE_FIELDS[1:]}
    return PresenceState(online=fields.get("online") == "1", connected_at=ints["connected_at"],
                         ended_through=ints["ended_through"], version=ints["version"] or 0,
                         online_time=ints["online_time"], offline_time=ints["offline_time"])


