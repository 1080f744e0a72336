"""Remote control end to end with real processes: the dev broker, the API (serving the command endpoints)
and a worker (its command runner), simulated devices (`adapter simulate`) and paho clients (issue 7)."""

from __future__ import annotations

import base64
import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.conftest import flush_store, new_prefix, store_client, store_env
from tests.support.processes import stop
from tests.support.servers import free_port, wait_for

pytestmark = pytest.mark.e2e

URL = "/iot/api/v1/remotectl/commands"
PASSWORD, TOKEN, KEY, SECRET = "e2e-admin-secret", "e2e-ingest-token", "e2e-key", "e2e-secret"
ACK_TIMEOUT = 2
# the API with the command endpoints (added in front until app.py registers them)
API = """
import sys, uvicorn
from adapter.api import commands
from adapter.app import create_app
app = create_app()
if not any(getattr(r, "path", "") == commands.BASE for r in app.router.routes):
    app.router.routes[0:0] = [ep.route() for ep in commands.ENDPOINTS]
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@dataclass
class Stack:
    api: httpx.Client
    mqtt_port: int
    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.logs)
        self.procs.append(proc)
        return proc

    @contextmanager
    def simulator(self, prefix: str, *flags: str) -> Iterator[str]:
        """One simulated device, `{prefix}0001`, online (subscribed) when this yields."""
        argv = [sys.executable, "-m", "adapter", "simulate", "--port", str(self.mqtt_port),
                "--prefix", prefix, "--interval", "1", *flags]
        proc = self.start(f"sim-{prefix}", argv)
        sn = f"{prefix}0001"
        try:
            wait_for(lambda: self.online(sn), timeout=20, interval=0.1, what=f"{sn} online")
            yield sn
        finally:
            stop(proc)

    def online(self, sn: str) -> bool:
        r = self.api.get(f"/iot/api/v1/monitor/devices/{sn}")
        return r.status_code == 200 and r.json()["data"]["online"] is True

    def post(self, sn: str, **fields: Any) -> str:
        body = {"to": [{"sn": sn}], "command": "sh", "body": {"shcmd": "whoami"}, **fields}
        r = self.api.post(URL, json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["to"][0]["idStr"])

    def command(self, cid: str) -> dict[str, Any]:
        r = self.api.get(URL, params={"id": cid})
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def metric(self, name: str) -> float:
        for line in self.api.get("/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def finished(self, cid: str, timeout: float = 20) -> dict[str, Any]:
        return dict(wait_for(lambda: (c := self.command(cid))["state"] in (2, 3) and c, timeout=timeout,
                             interval=0.1, what=f"command {cid} to finish"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prefix = new_prefix()
    r = store_client()
    flush_store(r, prefix)
    api_port, mqtt_port, broker_port = free_port(), free_port(), free_port()
    env = {**os.environ, **store_env(prefix), "ADAPTER_ADMIN_PASSWORD": PASSWORD,
           "ADAPTER_INGEST_TOKEN": TOKEN, "ADAPTER_EMQX_API_URL": f"http://127.0.0.1:{broker_port}/api/v5",
           "ADAPTER_EMQX_API_KEY": KEY, "ADAPTER_EMQX_API_SECRET": SECRET, "ADAPTER_DEV": "true",
           "ADAPTER_COMMAND_ACK_TIMEOUT": str(ACK_TIMEOUT), "PYTHONUNBUFFERED": "1"}
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as api:
        s = Stack(api, mqtt_port, env, tmp_path_factory.mktemp("commands-e2e"))
        try:
            s.start("devbroker", [sys.executable, "-m", "adapter", "devbroker", "--mqtt-port", str(mqtt_port),
                                  "--api-port", str(broker_port), "--webhook", f"{api.base_url}/emqx/events"])
            s.start("api", [sys.executable, "-c", API, str(api_port)])
            s.start("worker", [sys.executable, "-m", "adapter", "worker"])
            wait_for(lambda: _answers(f"{s.api.base_url}/readyz"), timeout=30, interval=0.1, what="the API")
            status = f"http://127.0.0.1:{broker_port}/api/v5/status"
            wait_for(lambda: _answers(status), timeout=30, interval=0.1, what="the dev broker")
            login = api.post("/iot/api/v1/auth/login", json={"user": "admin", "password": PASSWORD})
            api.headers["Authorization"] = f"Bearer {login.json()['data']['token']}"
            yield s
        finally:
            for proc in reversed(s.procs):
                stop(proc)
            flush_store(r, prefix)
            r.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Device:
    """A paho device that records the commands it receives and never answers unless told."""

    def __init__(self, sn: str, port: int) -> None:
        self.sn = sn
        self.received: list[dict[str, Any]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=sn, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(sn)
        self.client.on_message = lambda c, u, m: self.received.append(json.loads(m.payload))
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        wait_for(self.client.is_connected, timeout=10, what=f"{sn} connected")
        self.client.subscribe(f"dma/cmd/{sn}", qos=1)

    def answer(self, cid: str, status: str, sn: str | None = None) -> None:
        payload = {"id": int(cid), "sn": sn or self.sn, "command": "sh", "from": "iot_web_console",
                   "d": {"exestatus": status, "msg": "", "result": "", "status": status}, "status": status,
                   "time": 1}
        self.client.publish("dma/resp/cmd", json.dumps(payload), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_whoami_on_an_online_device(stack: Stack) -> None:
    with stack.simulator("WHO") as sn:
        cid = stack.post(sn, publishNow=True)
        done = stack.finished(cid)
    assert (done["state"], done["reason"], done["sn"]) == (2, "", sn) and done["tryTimes"] >= 1
    assert done["finishTime"] >= done["publishTime"] > 0
    r = stack.api.get(f"{URL}/responses", params={"id": cid, "from": "iot_web_console"})
    answer = r.json()["data"]
    assert answer["status"] == "ok" and answer["idStr"] == cid and answer["revtime"] > 0
    assert base64.b64decode(answer["d"]["result"]).decode().strip() == pwd.getpwuid(os.getuid()).pw_name
    wait_for(lambda: stack.command(cid)["deliverTime"] > 0, timeout=10, what="message.acked recorded")


def test_a_command_waits_for_its_device_to_come_online(stack: Stack) -> None:
    cid = stack.post("LATE0001", publishNow=False)
    assert stack.command(cid)["state"] == 0
    unsent = stack.metric('commands_sends_total{outcome="no_subscribers"}')
    pushed = stack.post("LATE0001", publishNow=True)  # 202: not sent, waits as well
    wait_for(lambda: stack.metric('commands_sends_total{outcome="no_subscribers"}') > unsent, timeout=10,
             what="the publish that found no subscriber")
    assert (stack.command(pushed)["state"], stack.command(pushed)["tryTimes"]) == (0, 0)
    with stack.simulator("LATE"):
        first, second = stack.finished(cid), stack.finished(pushed)
    assert (first["state"], second["state"]) == (2, 2)
    assert first["tryTimes"] >= 1 and second["tryTimes"] >= 1


def test_two_failures_then_ok(stack: Stack) -> None:
    with stack.simulator("FLAKY", "--fail-first", "2") as sn:
        done = stack.finished(stack.post(sn, maxRetries=3))
    assert (done["state"], done["tryTimes"]) == (2, 3)


def test_a_device_that_never_answers(stack: Stack) -> None:
    with stack.simulator("MUTE", "--no-answer") as sn:
        done = stack.finished(stack.post(sn, maxRetries=2), timeout=4 * ACK_TIMEOUT + 10)
    assert (done["state"], done["reason"], done["tryTimes"]) == (3, "retries_exhausted", 2)
    assert done["failedTime"] > 0


def test_expired_commands_and_answers_are_gone(stack: Stack) -> None:
    with stack.simulator("BRIEF") as sn:
        cid = stack.post(sn, expires=2)
        assert stack.finished(cid)["state"] == 2
    assert stack.api.get(f"{URL}/responses", params={"id": cid}).status_code == 200
    wait_for(lambda: stack.api.get(URL, params={"id": cid}).status_code == 404, timeout=10, what="expiry")
    assert stack.api.get(f"{URL}/responses", params={"id": cid}).json()["code"] == "not_found"
    assert cid not in {c["idStr"] for c in stack.api.get(URL, params={"sn": sn}).json()["data"]["list"]}


def test_canceled_before_online_is_never_delivered(stack: Stack) -> None:
    canceled = stack.post("CXL0001", publishNow=False)
    assert stack.api.delete(URL, params={"id": canceled}).json()["data"]["reason"] == "canceled"
    device = Device("CXL0001", stack.mqtt_port)
    try:
        wait_for(lambda: stack.online("CXL0001"), timeout=10, what="CXL0001 online")
        marker = stack.post("CXL0001", publishNow=True)
        wait_for(lambda: any(str(c["id"]) == marker for c in device.received), timeout=10, what="the marker")
        assert all(str(c["id"]) != canceled for c in device.received)
    finally:
        device.close()
    after = stack.command(canceled)
    assert (after["state"], after["reason"], after["tryTimes"]) == (3, "canceled", 0)


def test_a_forged_answer_is_ignored(stack: Stack) -> None:
    victim, forger = Device("VICTIM01", stack.mqtt_port), Device("FORGER01", stack.mqtt_port)
    try:
        wait_for(lambda: stack.online("VICTIM01"), timeout=10, what="the victim online")
        cid = stack.post("VICTIM01", maxRetries=50)
        wait_for(lambda: victim.received, timeout=10, what="the command at the victim")
        forger.answer(cid, "ok", sn="VICTIM01")  # names the victim: rejected by the ingest (sn_mismatch)
        forger.answer(cid, "ok")  # its own sn, someone else's command: ignored by the command
        wait_for(lambda: stack.metric('commands_responses_ignored_total{reason="foreign_client"}') == 1,
                 timeout=10, what="the forged answer counted")
        assert stack.command(cid)["state"] == 1
        assert stack.api.get(f"{URL}/responses", params={"id": cid}).status_code == 404
        victim.answer(cid, "ok")
        assert stack.finished(cid)["state"] == 2
    finally:
        victim.close()
        forger.close()
    wait_for(lambda: stack.metric('ingest_rejected_total{reason="sn_mismatch"}') >= 1, timeout=10,
             what="the rejected forgery counted")
