"""A rollout survives a SIGKILLed worker: real `adapter worker` processes, the first killed mid-rollout; the second's
guard starts a new driver once the lease lapses, which writes any batch the dead one committed but did not write.
Nothing is lost (every selected device gets exactly one execution) and nothing doubled (one command per device)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import redis

from adapter.settings import Settings
from adapter.store.keys import Keys
from tests.conftest import store_env
from tests.integration.test_rollouts import BASE, create, devices, executions, fleet, progress
from tests.support.processes import adapter_process, stop
from tests.support.servers import wait_for


def test_a_worker_killed_mid_rollout_loses_and_doubles_nothing(admin: httpx.Client, settings: Settings,
                                                               redis_db: redis.Redis, keys: Keys, key_prefix: str,
                                                               tmp_path: Path) -> None:
    sns = devices(redis_db, keys, 300)
    env = {**store_env(key_prefix), "ADAPTER_EMQX_API_URL": "http://127.0.0.1:9/api/v5"}
    ro = create(admin, selector={"snPrefix": "RD"}, rate={"perMinute": 1500}, maxInFlight=300)
    rid = ro["id"]

    def dispatched() -> int:
        return int(redis_db.hget(keys.rollout(rid), "dispatched") or 0)

    with fleet(redis_db, keys, rid):
        with adapter_process("worker", env=env, log_path=str(tmp_path / "w1.log")) as first:
            wait_for(lambda: dispatched() >= 60, 60, "60 dispatches by the first worker")
            stop(first, signal.SIGKILL)
        at_kill = dispatched()
        assert at_kill < 300
        with adapter_process("worker", env=env, log_path=str(tmp_path / "w2.log")):
            wait_for(lambda: progress(admin, rid)["state"] == "succeeded", 90, "the rollout to finish")
    done = progress(admin, rid)
    assert done["counts"]["dispatched"] == done["counts"]["succeeded"] == 300
    runs = executions(admin, rid)
    assert sorted(e["sn"] for e in runs) == sns and len({e["idStr"] for e in runs}) == 300
    with redis_db.pipeline(transaction=False) as pipe:
        for sn in sns:
            pipe.zcard(keys.commands_of_sn(sn))
        assert set(pipe.execute()) == {1}  # one command per device: none doubled
    assert redis_db.hget(keys.rollout(rid), "pending") is None
    assert admin.get(BASE, params={"id": rid}).json()["data"]["state"] == "succeeded"
