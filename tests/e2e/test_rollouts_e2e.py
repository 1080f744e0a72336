"""Rollouts end to end: `adapter dev` (dev broker, API, worker) and 50 simulated devices (`adapter simulate`), 20 %
of which answer every command with an error (`--failure-rate 0.2`): a rollout whose abort rule allows 10 % aborts,
in the tick that crosses the ratio; one over the healthy devices (by tag) succeeds, each device's command answered."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.conftest import running_dev_stack
from tests.support.processes import adapter_process
from tests.support.servers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.single_redis]  # `adapter dev` runs on one Redis
BASE = "/iot/api/v1/remotectl/rollouts"
COMMAND = {"command": "sh", "body": {"shcmd": "whoami"}, "maxRetries": 1, "expires": 600}


def finished(api: httpx.Client, rid: int) -> dict | None:
    data: dict = api.get(BASE, params={"id": rid}).json()["data"]
    return data if data["state"] not in ("queued", "running", "paused") else None


def test_simulated_failures_abort_a_rollout_and_healthy_devices_succeed(redis_db: redis.Redis, key_prefix: str,
                                                                       tmp_path: Path) -> None:
    with running_dev_stack(tmp_path, key_prefix) as dev, \
            adapter_process("simulate", "--port", dev["mqtt"], "--count", "50", "--prefix", "RS",
                            "--interval", "10", "--failure-rate", "0.2", env={},
                            log_path=str(tmp_path / "sim.log")), \
            httpx.Client(base_url=dev["api"], timeout=10) as api:
        token = api.post("/iot/api/v1/auth/login", json={"user": "admin", "password": dev["password"]})
        api.headers["Authorization"] = f"Bearer {token.json()['data']['token']}"
        wait_for(lambda: api.get("/iot/api/v1/monitor/devices/count").json()["data"]["online"] == 50, 60,
                 "50 simulated devices online", interval=0.2)

        r = api.post(BASE, json={"command": COMMAND, "selector": {"snPrefix": "RS"}, "rate": {"perMinute": 3000},
                                 "maxInFlight": 10, "timeout": 60, "abort": {"failureRatio": 0.1, "minExecuted": 20}})
        assert r.status_code == 200, r.text
        aborted = wait_for(lambda: finished(api, r.json()["data"]["id"]), 90, "the first rollout to end")
        assert aborted["state"] == "aborted" and "failureRatio" in aborted["abortReason"], aborted
        assert aborted["counts"]["failed"] >= 2 and aborted["counts"]["dispatched"] < 50
        runs = api.get(f"{BASE}/executions", params={"id": aborted["id"], "limit": 1000}).json()["data"]["list"]
        failed = next(e for e in runs if e["outcome"] == "failed")
        command = api.get("/iot/api/v1/remotectl/commands", params={"id": failed["idStr"]}).json()["data"]
        assert (command["state"], command["sn"]) == (3, failed["sn"])
        wrong = [e for e in runs if e["outcome"] == "failed" and int(e["sn"][2:]) % 5]
        assert not wrong, [(e, api.get("/iot/api/v1/remotectl/commands", params={"id": e["idStr"]}).json())
                           for e in wrong[:3]]  # RS0005, RS0010…: only the simulator's failing devices fail

        healthy = [f"RS{i:04}" for i in range(1, 51) if i % 5]
        api.put("/iot/api/v1/monitor/devices/tags", json={"sns": healthy, "tags": ["healthy"]})
        r = api.post(BASE, json={"command": COMMAND, "selector": {"tag": "healthy", "online": True},
                                 "rate": {"perMinute": 6000, "ramp": {"start": 600, "factor": 2, "every": 10}},
                                 "maxInFlight": 20, "abort": {"failureRatio": 0.1, "minExecuted": 20}})
        done = wait_for(lambda: finished(api, r.json()["data"]["id"]), 90, "the second rollout to end")
        bad = [e for e in api.get(f"{BASE}/executions", params={"id": done["id"], "limit": 1000}).json()["data"]["list"]
               if e["outcome"] != "succeeded"]
        bad_commands = [api.get("/iot/api/v1/remotectl/commands", params={"id": e["idStr"]}).json() for e in bad[:3]]
        assert done["state"] == "succeeded", (done, bad[:5], bad_commands)
        assert done["counts"]["succeeded"] == 40 == done["counts"]["dispatched"]
        page = api.get("/iot/api/v1/remotectl/commands", params={"sn": "RS0001"}).json()["data"]
        assert [c["state"] for c in page["list"]] == [2, 2]  # one command from each rollout, both answered ok
