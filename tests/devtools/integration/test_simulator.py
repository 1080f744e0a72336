"""The device simulator against the local Mosquitto (127.0.0.1:1883), watched by a paho observer."""

from __future__ import annotations

import asyncio
import base64
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapter_devtools.simulator import SimConfig, Simulator

BROKER = ("127.0.0.1", 1883)
ROOT = Path(__file__).resolve().parents[3]


def _broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _broker_up(), reason="no MQTT broker (Mosquitto) at 127.0.0.1:1883")


def wait_until(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Observer:
    """A paho client that records (topic, decoded JSON) for the topics it is given."""

    def __init__(self, topics: list[str]) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"obs-{uuid.uuid4().hex[:10]}")
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(*BROKER)
        self.client.loop_start()
        assert self._subscribed.wait(5), "observer never subscribed"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, orjson.loads(msg.payload)))

    def on(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for t, body in self.messages if t == topic]

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        self.client.publish(topic, orjson.dumps(body), qos=1).wait_for_publish(5)

    def response(self, cid: int, index: int = 0) -> dict[str, Any] | None:
        found = [b for b in self.on("dma/resp/cmd") if b.get("id") == cid]
        return found[index] if len(found) > index else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return f"IT{uuid.uuid4().hex[:8].upper()}-"


@pytest.fixture
def observer(prefix: str) -> Iterator[Observer]:
    obs = Observer([f"dma/report/{prefix}0001/#", f"dma/report/{prefix}0002/#", "dma/resp/cmd"])
    yield obs
    obs.close()


class SimThread:
    """A Simulator on its own asyncio loop in a thread, stopped like Ctrl-C would."""

    def __init__(self, config: SimConfig) -> None:
        self.sim = Simulator(config)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self._ready.set()
        await self.sim.run(self.stop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "simulator did not stop"


def command(cid: int, name: str, shcmd: str | None = None) -> dict[str, Any]:
    body = {"shcmd": shcmd} if shcmd is not None else {}
    return {"id": cid, "from": "it", "command": name, "method": "", "d": body, "detached": False,
            "expires": 60, "time": int(time.time())}


def check_report(kind: str, sn: str, body: dict[str, Any]) -> None:
    assert body["sn"] == sn and isinstance(body["time"], int)
    if kind == "heartbeat":
        assert set(body) == {"sn", "time", "bootTime", "dur"} and body["dur"] == 0.5
        return
    assert set(body) == {"sn", "time", "d"}
    row_keys = {"procs": {"n", "mem", "cpu"}, "versions": {"n", "v"}, "peripherals": {"nId", "gwId", "online", "msg"}}
    if kind == "sys":
        assert set(body["d"]) == {"free", "load", "used"}
    else:
        assert body["d"] and all(set(row) == row_keys[kind] for row in body["d"])


def test_reports_and_commands_over_a_real_broker(prefix: str, observer: Observer) -> None:
    gw, plain = f"{prefix}0001", f"{prefix}0002"
    argv = ["scripts/simulate", "--prefix", prefix, "--count", "2", "--gateways", "0.5", "--interval", "0.5",
            "--log-level", "WARNING"]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable})
    try:
        kinds = ["heartbeat", "procs", "sys", "versions"]
        for sn, expected in ((gw, [*kinds, "peripherals"]), (plain, kinds)):
            for kind in expected:
                topic = f"dma/report/{sn}/{kind}"
                body = wait_until(partial(observer.on, topic), what=topic)[0]
                check_report(kind, sn, body)
        assert all(row["gwId"] == gw for row in observer.on(f"dma/report/{gw}/peripherals")[0]["d"])
        wait_until(lambda: len(observer.on(f"dma/report/{plain}/heartbeat")) >= 2, what="a second heartbeat")
        assert observer.on(f"dma/report/{plain}/peripherals") == []

        big = 201811260000000001
        observer.publish(f"dma/cmd/{gw}", command(big, "sh", "whoami"))
        observer.publish(f"dma/cmd/{plain}", command(big + 1, "sh", "rm -rf /tmp/nothing"))
        observer.publish(f"dma/cmd/{plain}", command(big + 2, "reboot"))
        ok = wait_until(lambda: observer.response(big), what="whoami response")
        assert set(ok) == {"id", "sn", "command", "from", "d", "status", "time"}
        assert (ok["sn"], ok["command"], ok["from"], ok["status"]) == (gw, "sh", "it", "ok")
        assert set(ok["d"]) == {"exestatus", "msg", "result", "status"}
        assert base64.b64decode(ok["d"]["result"]).decode().strip() == pwd.getpwuid(os.geteuid()).pw_name
        refused = wait_until(lambda: observer.response(big + 1), what="refusal")
        assert (refused["sn"], refused["status"], refused["d"]["msg"]) == (plain, "err", "not allowed")
        unknown = wait_until(lambda: observer.response(big + 2), what="unknown command answer")
        assert (unknown["status"], unknown["d"]["msg"]) == ("err", "unknown command")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fail_first_then_ok_on_redelivery(prefix: str, observer: Observer) -> None:
    sim = SimThread(SimConfig(prefix=prefix, count=1, interval=0.5, fail_first=1))
    try:
        sn = f"{prefix}0001"
        wait_until(lambda: observer.on(f"dma/report/{sn}/heartbeat"), what="first heartbeat")
        cid = 202001010000000042
        observer.publish(f"dma/cmd/{sn}", command(cid, "sh", "echo hi"))
        first = wait_until(lambda: observer.response(cid), what="first answer")
        assert (first["status"], first["d"]["msg"]) == ("err", "simulated failure 1/1")
        observer.publish(f"dma/cmd/{sn}", command(cid, "sh", "echo hi"))
        second = wait_until(lambda: observer.response(cid, 1), what="second answer")
        assert second["status"] == "ok" and base64.b64decode(second["d"]["result"]) == b"hi\n"
    finally:
        sim.close()
    assert sim.sim.stats()["online"] == 0


def test_drop_and_reconnect(prefix: str, observer: Observer) -> None:
    sim = SimThread(SimConfig(prefix=prefix, count=1, interval=0.5, drop_rate=1.0, reconnect_delay=0.1))
    try:
        sn = f"{prefix}0001"
        wait_until(lambda: sim.sim.stats()["connects"] >= 3, what="two reconnects")
        stats = sim.sim.stats()
        assert stats["drops"] >= 2
        # every connection reports right after subscribing, then drops: heartbeats keep coming
        wait_until(lambda: len(observer.on(f"dma/report/{sn}/heartbeat")) >= 3, what="heartbeats after reconnects")
    finally:
        sim.close()
