"""The web console (issue 13) in Debian's chromium against the real stack: `adapter dev` (dev broker, API,
worker), simulated devices answering `sh`, and a real HTTP receiver for a route."""

from __future__ import annotations

import os
import pwd
import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from standardwebhooks import Webhook

from tests.browser.conftest import VIEWER, VIEWER_PASSWORD, Console, log_in, open_page, shot
from tests.support.receiver import Receiver
from tests.support.servers import serve, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WRITE_BUTTONS = re.compile(r"^(Send|Cancel|Add |Save|Enable|Disable|Rotate|Delete|Yes, delete|Replay|Clear selection)")


def test_log_in_see_devices_appear_and_log_out(console: Console, page: Page) -> None:
    page.goto(f"{console.url}/console")  # the redirect to /console/
    assert page.url.endswith("/console/")
    page.get_by_label("User", exact=True).fill("admin")
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    wrong = httpx.post(f"{console.url}/iot/api/v1/auth/login", json={"user": "admin", "password": "x"}).json()
    expect(page.get_by_role("alert")).to_have_text(wrong["msg"])
    # by keyboard alone: the fields are labelled and in order
    page.get_by_label("Password", exact=True).fill("")
    page.get_by_label("User", exact=True).focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(console.password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()

    devices = page.get_by_role("region", name="Devices")
    sns = console.simulate()
    expect(devices.get_by_role("definition").first).to_have_text("2", timeout=20_000)  # online, live
    expect(page.get_by_role("table", name="Nodes")).to_be_visible()
    shot(page, "dashboard")

    page.get_by_role("link", name="Devices", exact=True).first.click()
    table = page.get_by_role("table", name="Devices")
    for sn in sns:
        expect(table.get_by_role("row", name=re.compile(sn))).to_contain_text("online")
    page.get_by_label("sn starts with").fill(sns[1])
    page.get_by_role("button", name="Search").click()
    expect(table.get_by_role("row")).to_have_count(2)  # the header and the one device
    assert "sn=" + sns[1] in page.url
    shot(page, "devices")

    table.get_by_role("link", name=sns[1]).click()
    expect(page.get_by_role("heading", name=f"Device {sns[1]}")).to_be_visible()
    procs = page.get_by_role("table", name="Processes")
    expect(procs.get_by_role("columnheader", name="mem")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("table", name="Versions").get_by_role("columnheader", name="v")).to_be_visible()
    expect(page.get_by_role("table", name="System").get_by_role("rowheader", name="load")).to_be_visible()
    shot(page, "device")

    page.reload()  # the token is kept for the tab
    expect(page.get_by_role("heading", name=f"Device {sns[1]}")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Logged out.")
