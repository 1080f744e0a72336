"""Fixtures for the web console in a real browser: `adapter dev` (tests/e2e) with simulated devices, Debian's
chromium driven by Playwright (launched from /usr/bin/chromium: never `playwright install`), pages at 1280 px.

`CONSOLE_SCREENSHOTS=<folder>` makes the tests save a screenshot of each page there (docs/console/*.png)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import flush_store, new_prefix, store_client, store_env
from tests.e2e.conftest import running_dev_stack
from tests.support.processes import stop
from tests.support.servers import wait_for

CHROMIUM = "/usr/bin/chromium"
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")
VIEWER, VIEWER_PASSWORD = "viewer", "viewer-secret-1"
PREFIX, COUNT = "CONSOLE", 2
# what the console's stack runs with: deliveries dead after two quick retries, a breaker that opens after six
# failures in a row and probes every 2 s, and the charts' series sampled every second
STACK = {"ADAPTER_DELIVERY_SCHEDULE": "1s,1s", "ADAPTER_DELIVERY_BREAKER_THRESHOLD": "6",
         "ADAPTER_DELIVERY_BREAKER_PROBE": "2", "ADAPTER_STATS_INTERVAL": "1"}


@dataclass
class Console:
    url: str  # the API's base URL; the console is at url + /console/
    password: str  # admin's
    mqtt_port: str
    api: httpx.Client  # logged in as admin
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def sns(self) -> list[str]:
        return [f"{PREFIX}{n:04d}" for n in range(1, COUNT + 1)]

    def simulate(self) -> list[str]:
        """Starts the simulated devices (once per module) and answers their sns when all are online."""
        if not self.procs:
            with open(self.logs / "simulate.log", "wb") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "adapter", "simulate", "--port", self.mqtt_port, "--count", str(COUNT),
                     "--prefix", PREFIX, "--interval", "1", "--gateways", "1"], stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
        wait_for(lambda: self.api.get("/iot/api/v1/monitor/devices/count").json()["data"]["online"] >= COUNT,
                 timeout=30, interval=0.2, what="the simulated devices online")
        return self.sns

    def simulate_more(self, prefix: str, count: int, *extra: str) -> subprocess.Popen[bytes]:
        """More simulated devices (`prefix` + 0001…), reporting every 30 s; stopped with the module's."""
        with open(self.logs / f"simulate-{prefix}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "adapter", "simulate", "--port", self.mqtt_port, "--count", str(count),
                 "--prefix", prefix, "--interval", "30", *extra], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.procs.append(proc)
        return proc

    def publish(self, topic: str, payload: str, client_id: str = "console-test") -> None:
        """One QoS 1 message from a plain MQTT client (not a device), waited for until the broker has it."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        client.connect("127.0.0.1", int(self.mqtt_port), keepalive=30)
        client.loop_start()
        try:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    prefix = new_prefix()
    r = store_client()
    flush_store(r, prefix)
    logs = tmp_path_factory.mktemp("console")
    try:
        with running_dev_stack(logs, prefix, STACK) as info, httpx.Client(base_url=info["api"], timeout=10) as api:
            token = api.post("/iot/api/v1/auth/login", json={"user": "admin", "password": info["password"]})
            api.headers["Authorization"] = f"Bearer {token.json()['data']['token']}"
            env = {**os.environ, **store_env(prefix)}
            subprocess.run([sys.executable, "-m", "adapter", "user", "add", VIEWER, "--role", "viewer"],
                           input=f"{VIEWER_PASSWORD}\n".encode(), env=env, check=True, capture_output=True)
            c = Console(info["api"], info["password"], info["mqtt"], api, logs)
            try:
                yield c
            finally:
                for proc in c.procs:
                    stop(proc)
    finally:
        flush_store(r, prefix)
        r.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped: while Playwright's sync API runs, its event loop is the thread's running loop (and
    `asyncio.run` in later tests would fail)."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])  # root in CI: no sandbox
        yield b
        b.close()


def open_page(browser: Browser, width: int = 1280, height: int = 800, **options: Any) -> Iterator[Page]:
    """A page in a context of its own (`options`: Playwright's, e.g. `timezone_id`), checked for script errors."""
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"the page threw: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser, 390, 844)


def log_in(page: Page, console: Console, user: str = "admin", password: str | None = None) -> None:
    page.goto(f"{console.url}/console/")
    page.get_by_label("User", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(password or console.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)
