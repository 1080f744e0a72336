"""The calls of rollout.lua (its header says what each mode takes), and running them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

ROLLOUT = scripts.Script.load("rollouts/rollout.lua")
RETENTION = scripts.Script.load("rollouts/retention.lua")


def rollout_call(keys: Keys, rid: int | str, mode: str, *args: Any) -> scripts.ScriptCall:
    return ROLLOUT.call(ro=keys.rollout(rid), execs=keys.rollout_execs(rid), results=keys.rollout_results(rid),
                        inflight=keys.rollout_inflight(rid), driver=keys.rollout_driver(rid),
                        active=keys.rollouts_active(), mode=mode, rid=str(rid), mode_args=args)


def retention_call(keys: Keys, rid: int | str, cutoff_ms: int) -> scripts.ScriptCall:
    """RETENTION (retention.lua) of rollout `rid`: gone if it ended at or before `cutoff_ms`."""
    return RETENTION.call(rollouts=keys.rollouts(), active=keys.rollouts_active(), ro=keys.rollout(rid),
                          sns=keys.rollout_sns(rid), execs=keys.rollout_execs(rid), results=keys.rollout_results(rid),
                          inflight=keys.rollout_inflight(rid), driver=keys.rollout_driver(rid), rid=str(rid),
                          cutoff=cutoff_ms)


async def _run(client: AsyncRedis, keys: Keys, rid: int | str, mode: str, *args: Any) -> Any:
    return await scripts.call(client, rollout_call(keys, rid, mode, *args))


async def control(client: AsyncRedis, keys: Keys, rid: int | str, action: str) -> str:
    return str(await _run(client, keys, rid, "control", action))


async def commit(client: AsyncRedis, keys: Keys, rid: int | str, driver: str, now_ms: int, lease_ms: int,
                 ending: str, settled: Sequence[tuple[str, str]], dispatch: Sequence[tuple[str, str, int]],
                 fields: dict[str, Any]) -> tuple[str, bool, list[str]]:
    """Answers the state after the commit, whether the driver may stop, and the sns dispatched."""
    args: list[Any] = [driver, now_ms, lease_ms, ending, len(settled)]
    for pair in settled:
        args += pair
    args.append(len(dispatch))
    for triple in dispatch:
        args += triple
    args.append(len(fields))
    for name, value in fields.items():
        args += [name, value]
    reply = await _run(client, keys, rid, "commit", *args)
    if not isinstance(reply, list):
        return str(reply), True, []
    return str(reply[0]), reply[1] == "1", [str(s) for s in reply[2:]]


async def written(client: AsyncRedis, keys: Keys, rid: int | str, driver: str) -> bool:
    """Clears the pending batch; False when another driver holds the lease (it writes the batch again)."""
    reply = await _run(client, keys, rid, "written", driver)
    return isinstance(reply, list) and reply[0] != "fenced"


async def hand_off(client: AsyncRedis, keys: Keys, rid: int | str, driver: str, successor: str, grace_ms: int) -> bool:
    """The lease from `driver` to `successor` (for `grace_ms`, its wait in the queue); False when not ours."""
    return str(await _run(client, keys, rid, "handoff", driver, successor, grace_ms)) == "1"
