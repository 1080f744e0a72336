"""The seed's example end to end: a route on `dma/resp/cmd` receives the responses that simulated devices
publish through the dev broker (routes issue, item 4)."""

from __future__ import annotations

import base64
import json
import os
import pwd
import signal
import subprocess
import sys

import httpx
import pytest
from standardwebhooks import Webhook

from tests.support.processes import stop
from tests.support.receiver import Receiver
from tests.support.servers import serve, wait_for

pytestmark = pytest.mark.e2e


def test_route_on_dma_resp_cmd_receives_simulated_responses(dev_stack: dict[str, str]) -> None:
    rec = Receiver()
    with serve(rec.app()) as hook, httpx.Client(base_url=dev_stack["api"], timeout=10) as c:
        token = c.post("/iot/api/v1/auth/login", json={"user": "admin", "password": dev_stack["password"]})
        c.headers["Authorization"] = f"Bearer {token.json()['data']['token']}"
        route = c.post("/iot/api/v1/msgroute/configs",
                       json={"topic": "dma/resp/cmd", "name": "test", "url": f"{hook}/cmdrespcallback"})
        assert route.status_code == 200, route.text
        secret = route.json()["data"]["secret"]
        sim = subprocess.Popen([sys.executable, "-m", "adapter", "simulate", "--port", dev_stack["mqtt"],
                                "--count", "2", "--prefix", "ROUTESIM", "--interval", "30"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            sns = ["ROUTESIM0001", "ROUTESIM0002"]

            def online() -> bool:
                count = c.get("/iot/api/v1/monitor/devices/count").json()["data"]
                return bool(count["online"] >= 2)

            wait_for(online, timeout=20, what="the simulated devices online")
            auth = (dev_stack["api_key"], dev_stack["api_secret"])
            with httpx.Client(base_url=dev_stack["broker_api"], auth=auth) as broker:
                for n, sn in enumerate(sns, start=1):  # what EMQX's publish API does for a command
                    cmd = {"id": 900 + n, "from": "test", "command": "sh", "method": "",
                           "d": {"shcmd": "whoami"}, "detached": False, "expires": 60, "time": 1}
                    r = broker.post("/publish", json={"topic": f"dma/cmd/{sn}", "payload": json.dumps(cmd),
                                                      "qos": 1})
                    assert r.status_code == 200, r.text
            wait_for(lambda: len(rec.received) >= 2, timeout=20, what="the routed responses")
        finally:
            stop(sim, signal.SIGTERM)
    bodies = [Webhook(secret).verify(r.body, r.headers) for r in rec.received]
    assert {b["topic"] for b in bodies} == {"dma/resp/cmd"}
    assert {b["clientid"] for b in bodies} == {"ROUTESIM0001", "ROUTESIM0002"}
    answers = [json.loads(b["payload"]) for b in bodies]
    assert {a["id"] for a in answers} == {901, 902}
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert all(base64.b64decode(a["d"]["result"]).decode().strip() == user for a in answers)
