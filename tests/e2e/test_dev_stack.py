"""The embedded default end to end with real processes: `adapter dev` (Redis, dev broker, API, worker), a paho
device, the ingest, the device list and the broker views; Ctrl-C leaves nothing behind (issues 3 and 4)."""

from __future__ import annotations

import json
import re
import time

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.support.servers import wait_for

pytestmark = pytest.mark.e2e


def test_a_device_through_the_dev_stack(dev_stack: dict[str, str]) -> None:
    with httpx.Client(base_url=dev_stack["api"], timeout=10) as c:
        r = c.post("/iot/api/v1/auth/login", json={"user": "admin", "password": dev_stack["password"]})
        assert r.status_code == 200, r.text
        c.headers["Authorization"] = f"Bearer {r.json()['data']['token']}"

        sn = "E2EDEV0001"
        dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=sn, protocol=mqtt.MQTTv311)
        dev.username_pw_set(sn)
        dev.connect("127.0.0.1", int(dev_stack["mqtt"]), keepalive=30)
        dev.loop_start()
        try:
            wait_for(lambda: dev.is_connected(), timeout=10, what="the MQTT connection")
            dev.subscribe(f"dma/cmd/{sn}", qos=1)
            procs = {"sn": sn, "time": 12, "d": [{"n": "monitor", "mem": 1088}]}
            dev.publish(f"dma/report/{sn}/heartbeat", json.dumps({"sn": sn, "time": 10, "bootTime": 5, "dur": 15}))
            dev.publish(f"dma/report/{sn}/procs", json.dumps(procs), qos=1)

            def connected_listed() -> bool:
                page = c.get("/iot/api/v1/monitor/brokers/connections").json()["data"]
                return any(item["client_id"] == sn for item in page["list"])

            wait_for(connected_listed, timeout=10, what="the client in the broker's connections")

            def device() -> dict | None:
                page = c.get("/iot/api/v1/monitor/devices", params={"sn": sn}).json()["data"]
                return page["list"][0] if page["list"] and page["list"][0]["procs"] else None

            item = wait_for(device, timeout=10, what="the device and its report")
            assert item["online"] is True and item["dur"] == 15 and item["bootTime"] == 5
            assert json.loads(item["procs"])["d"] == procs["d"]
            assert c.get("/iot/api/v1/monitor/devices/count").json()["data"] == {"online": 1, "offline": 0,
                                                                                 "total": 1}
            metrics = c.get("/metrics").text
            assert re.search(r'ingest_events_total\{type="client.connected"\} [1-9]', metrics) or \
                wait_for(lambda: re.search(r'ingest_events_total\{type="client.connected"\} [1-9]',
                                           c.get("/metrics").text), timeout=5, what="the connect counted")
        finally:
            dev.disconnect()
            dev.loop_stop()
        wait_for(lambda: c.get("/iot/api/v1/monitor/devices/count").json()["data"]["offline"] == 1,
                 timeout=10, what="the device offline after its disconnect")
        detail = c.get(f"/iot/api/v1/monitor/devices/{sn}").json()["data"]
        assert detail["online"] is False and detail["offlineTime"] >= detail["onlineTime"] > 0
        assert time.time() - detail["offlineTime"] < 60
