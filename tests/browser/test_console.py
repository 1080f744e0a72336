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
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()
    shot(page, "login")
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

    page.get_by_role("link", name="Devices", exact=True).first.click()
    table = page.get_by_role("table", name="Devices")
    for sn in sns:
        expect(table.get_by_role("row", name=re.compile(sn))).to_contain_text("online")
    shot(page, "devices")
    page.get_by_label("sn starts with").fill(sns[1])
    page.get_by_role("button", name="Search").click()
    expect(table.get_by_role("row")).to_have_count(2)  # the header and the one device
    assert "sn=" + sns[1] in page.url

    table.get_by_role("link", name=sns[1]).click()
    expect(page.get_by_role("heading", name=f"Device {sns[1]}")).to_be_visible()
    procs = page.get_by_role("table", name="Processes")
    expect(procs.get_by_role("columnheader", name="mem")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("table", name="Versions").get_by_role("columnheader", name="v")).to_be_visible()
    expect(page.get_by_role("table", name="System").get_by_role("rowheader", name="load")).to_be_visible()
    peripherals = page.get_by_role("table", name="Peripherals")
    expect(peripherals.get_by_role("cell", name=f"{sns[1]}-P1")).to_be_visible(timeout=20_000)
    shot(page, "device")

    page.reload()  # the token is kept for the tab
    expect(page.get_by_role("heading", name=f"Device {sns[1]}")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Logged out.")


def test_sh_whoami_on_two_devices_and_cancel(console: Console, page: Page) -> None:
    sns = console.simulate()
    log_in(page, console)
    page.get_by_role("link", name="Devices", exact=True).first.click()
    for sn in sns:
        page.get_by_role("checkbox", name=f"select {sn}").check()
    page.get_by_role("button", name="Send a command to 2 selected").click()
    form = page.get_by_role("form", name="Send a command")
    expect(form.get_by_label("Devices")).to_have_value("\n".join(sns))
    expect(form.get_by_label("Command", exact=True)).to_have_value("sh")
    form.get_by_label("Shell command (shcmd)").fill("whoami")
    form.get_by_role("button", name="Send").click()

    user = pwd.getpwuid(os.geteuid()).pw_name
    sent = page.get_by_role("region", name=re.compile("^Sent: sh to 2"))
    for sn in sns:
        answer = sent.get_by_role("article", name=re.compile(f"^{sn} "))
        expect(answer.get_by_text("success")).to_be_visible(timeout=30_000)
        expect(answer.get_by_role("generic", name="output").or_(answer.locator("pre"))).to_have_text(user)
    # the ids shown are the API's, exactly (past 2^53: only idStr keeps them)
    ids = [(sent.get_by_role("article").nth(n).get_attribute("aria-label") or "").split()[1] for n in range(2)]
    for sn, cid in zip(sns, ids, strict=True):
        command = console.api.get("/iot/api/v1/remotectl/commands", params={"id": cid}).json()["data"]
        assert (command["idStr"], command["sn"], command["from"], command["state"]) == (cid, sn, "admin", 2)
        assert int(cid) > 2**53
    listed = page.get_by_role("table", name="Commands")
    expect(listed.get_by_role("row", name=re.compile(ids[0]))).to_contain_text("success")
    listed.get_by_role("button", name=f"Answer of {ids[0]}").click()
    expect(page.get_by_role("region", name=re.compile("^Answer of")).locator("pre")).to_have_text(user)

    # any command with a JSON body, not published now, to a device that is not there: then cancel it
    form.get_by_label("Devices").fill("ABSENT0001")
    form.get_by_label("Command", exact=True).fill("reboot")
    expect(form.get_by_label("Shell command (shcmd)")).to_be_hidden()
    form.get_by_label("Method").select_option("set")
    form.get_by_label("Body (JSON object)").fill('{"delay": 5}')
    form.get_by_label("Publish now").uncheck()
    form.get_by_label("Max retries").fill("2")
    form.get_by_label("Expires after (s)").fill("600")
    form.get_by_role("button", name="Send").click()
    waiting = page.get_by_role("region", name=re.compile("^Sent: reboot to 1")).get_by_role("article")
    expect(waiting).to_contain_text("ready")
    cid = (waiting.get_attribute("aria-label") or "").split()[1]
    stored = console.api.get("/iot/api/v1/remotectl/commands", params={"id": cid}).json()["data"]
    assert (stored["command"], stored["method"], stored["d"], stored["publishNow"], stored["maxRetries"]) == \
        ("reboot", "set", {"delay": 5}, False, 2) and stored["expires"] > 0
    page.get_by_role("button", name="Refresh").click()
    listed.get_by_role("button", name=f"Cancel {cid}").click()
    expect(page.get_by_role("status").filter(has_text="canceled")).to_have_text(f"Command {cid} canceled.")
    row = listed.get_by_role("row", name=re.compile(cid))
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("canceled")
    expect(waiting).to_contain_text("canceled")


def test_bad_input_shows_the_api_message(console: Console, page: Page) -> None:
    routes = console.api.get("/iot/api/v1/msgroute/configs").json()["data"]
    log_in(page, console)
    page.get_by_role("link", name="Routes", exact=True).click()
    form = page.get_by_role("form", name="Add a route")
    form.get_by_label("Name").fill("bad")
    form.get_by_label("Topic filter").fill("dma/#/more")
    form.get_by_label("URL").fill("http://127.0.0.1:9/hook")
    form.get_by_role("button", name="Add route").click()
    body = {"name": "bad", "topic": "dma/#/more", "url": "http://127.0.0.1:9/hook", "enabled": True}
    answer = console.api.post("/iot/api/v1/msgroute/configs", json=body)
    assert answer.status_code == 400, answer.text
    expect(form.get_by_role("alert")).to_have_text(answer.json()["msg"])
    assert console.api.get("/iot/api/v1/msgroute/configs").json()["data"] == routes  # nothing stored

    page.get_by_role("link", name="Commands", exact=True).click()
    form = page.get_by_role("form", name="Send a command")
    form.get_by_label("Devices").fill("X1, BAD+1")
    form.get_by_role("button", name="Send").click()
    answer = console.api.post("/iot/api/v1/remotectl/commands", json={
        "from": "iot_web_console", "to": [{"sn": "X1"}, {"sn": "BAD+1"}], "command": "sh",
        "body": {"shcmd": "whoami"}, "publishNow": True, "maxRetries": 3})
    assert answer.status_code == 400, answer.text
    expect(form.get_by_role("alert")).to_have_text(answer.json()["msg"])


def test_a_route_made_in_the_console_delivers(console: Console, page: Page) -> None:
    sns = console.simulate()
    rec = Receiver()
    with serve(rec.app()) as hook:
        log_in(page, console)
        page.get_by_role("link", name="Routes", exact=True).click()
        form = page.get_by_role("form", name="Add a route")
        form.get_by_label("Name").fill("heartbeats")
        form.get_by_label("Topic filter").fill("dma/report/+/heartbeat")
        form.get_by_label("URL").fill(f"{hook}/heartbeats")
        form.get_by_role("button", name="Add route").click()
        secret = page.get_by_label("signing secret")
        expect(secret).to_have_value(re.compile("^whsec_"))
        shown = secret.input_value()
        detail = page.get_by_role("region", name=re.compile("^Route [0-9]+$"))
        deliveries = detail.get_by_role("table", name="Deliveries")
        expect(deliveries.get_by_role("cell", name="success").first).to_be_visible(timeout=30_000)
        wait_for(lambda: rec.received, timeout=10, what="a delivery at the receiver")
    body = Webhook(shown).verify(rec.received[0].body, rec.received[0].headers)  # the secret shown is the one
    assert body["topic"] in {f"dma/report/{sn}/heartbeat" for sn in sns}

    page.get_by_role("button", name="Disable").click()
    expect(detail.get_by_role("status")).to_have_text("Disabled.")
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_label("signing secret").first).not_to_have_value(shown)
    page.get_by_role("link", name="Routes", exact=True).click()
    listed = page.get_by_role("table", name="Message routes")
    expect(listed.get_by_role("row", name=re.compile("heartbeats"))).to_contain_text("dma/report/+/heartbeat")


def test_callbacks_add_enable_rotate_delete(console: Console, page: Page) -> None:
    log_in(page, console)
    page.get_by_role("link", name="Callbacks", exact=True).click()
    expect(page.get_by_role("region", name="device callbacks")).to_contain_text("Delivered")
    form = page.get_by_role("form", name="Add a callback")
    form.get_by_label("Type").select_option("peripheral")
    form.get_by_label("URL").fill("http://127.0.0.1:9/status")
    form.get_by_label("Enabled").uncheck()
    form.get_by_role("button", name="Add callback").click()
    expect(page.get_by_label("signing secret")).to_have_value(re.compile("^whsec_"))
    detail = page.get_by_role("region", name=re.compile("^Callback [0-9]+$"))
    expect(detail.get_by_role("table").first).to_contain_text("disabled")
    detail.get_by_role("button", name="Enable").click()
    expect(detail.get_by_role("table").first).to_contain_text("enabled")
    listed = console.api.get("/iot/api/v1/monitor/devices/callbacks").json()["data"]["list"]
    (item,) = [cb for cb in listed if cb["url"] == "http://127.0.0.1:9/status"]
    assert (item["type"], item["enabled"]) == ("peripheral", True)
    detail.get_by_label("URL").fill("http://127.0.0.1:9/other")
    detail.get_by_role("button", name="Save changes").click()
    expect(detail.get_by_role("status")).to_have_text("Saved.")
    shot(page, "callbacks")
    detail.get_by_role("button", name="Delete").click()
    detail.get_by_role("button", name=re.compile("^Yes, delete")).click()
    expect(page.get_by_role("link", name=f"Open callback {item['id']}")).to_have_count(0)
    left = console.api.get("/iot/api/v1/monitor/devices/callbacks").json()["data"]["list"]
    assert item["id"] not in {cb["id"] for cb in left}


def write_buttons(page: Page) -> list[str]:
    """The buttons, links and forms of the page that change something."""
    names = [b.inner_text() for b in page.get_by_role("button").all()]
    links = [a.inner_text() for a in page.get_by_role("link").all()]
    return [n for n in names if WRITE_BUTTONS.match(n)] + [n for n in links if n.startswith("Send")] + \
        [f"form {f.get_attribute('aria-label')}" for f in page.get_by_role("form").all()
         if (f.get_attribute("aria-label") or "").startswith(("Send", "Add", "Change"))]


def pages_of(console: Console) -> list[str]:
    route = console.api.post("/iot/api/v1/msgroute/configs",
                             json={"name": "seen", "topic": "a/b", "url": "http://127.0.0.1:9/x"}).json()["data"]
    cb = console.api.post("/iot/api/v1/monitor/devices/callbacks",
                          json={"type": "device", "url": "http://127.0.0.1:9/y"}).json()["data"]
    sn = console.simulate()[0]
    return ["dashboard", "devices", f"device/{sn}", "commands", "routes", f"routes/{route['id']}", "callbacks",
            f"callbacks/{cb['id']}"]


def test_a_viewer_sees_no_write_controls(console: Console, browser: Browser) -> None:
    pages = pages_of(console)
    seen: dict[str, dict[str, list[str]]] = {"admin": {}, VIEWER: {}}
    for user, password in (("admin", console.password), (VIEWER, VIEWER_PASSWORD)):
        for page in open_page(browser):
            log_in(page, console, user, password)
            expect(page.get_by_text(f"{user} (")).to_be_visible()
            for name in pages:
                page.goto(f"{console.url}/console/#/{name}")
                expect(page.get_by_role("heading", level=1)).to_be_visible()
                page.wait_for_load_state("networkidle")
                seen[user][name] = write_buttons(page)
    assert all(seen["admin"][name] for name in pages if name != "dashboard"), seen["admin"]
    assert seen[VIEWER] == {name: [] for name in pages}


def test_a_phone_width_page_fits(console: Console, phone: Page) -> None:
    console.simulate()
    log_in(phone, console)
    for name in ("dashboard", "devices", "commands", "clients", "routes", "callbacks"):
        phone.goto(f"{console.url}/console/#/{name}")
        expect(phone.get_by_role("heading", level=1)).to_be_visible()
        phone.wait_for_load_state("networkidle")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width} px wide"
    phone.goto(f"{console.url}/console/#/devices")
    expect(phone.get_by_role("table", name="Devices")).to_be_visible()
    shot(phone, "phone-devices")


def test_an_ended_login_goes_back_to_the_login(console: Console, page: Page) -> None:
    log_in(page, console)
    token = page.evaluate("sessionStorage.getItem('adapter.console.token')")
    assert httpx.post(f"{console.url}/iot/api/v1/auth/logout",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 200
    page.get_by_role("link", name="Devices", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("Your login has ended: log in again.")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('adapter.console.token')") is None
