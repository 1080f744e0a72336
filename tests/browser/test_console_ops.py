"""The console operators keep open (issue 23), in Debian's chromium against the real stack (`adapter dev` with a
short retry schedule, a quick breaker and the series sampled every second; simulated devices; real receivers):
target health and the "needs attention" filter, charts with their tables, the command history, connections and
sessions, dead letters, live lists that keep focus, scroll and ticks, local times, loading and timeouts, no stray
text, an icon."""

from __future__ import annotations

import os
import pwd
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import VIEWER, VIEWER_PASSWORD, Console, log_in, open_page, shot
from tests.support.receiver import Receiver
from tests.support.servers import serve, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROUTES = "/iot/api/v1/msgroute/configs"
CALLBACKS = "/iot/api/v1/monitor/devices/callbacks"
STRAY = ("null", "undefined", "NaN", "[object Object]")


def made(console: Console, path: str, **body: Any) -> dict[str, Any]:
    r = console.api.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def gone(console: Console, path: str, *ids: int) -> None:
    for target_id in ids:
        console.api.delete(path, params={"id": target_id})


def row(table: Any, *cells: str) -> Any:
    """The table's row with the cells `cells`, one after the other (a row's name is its cells' names, spaced)."""
    return table.get_by_role("row", name=re.compile(r"(^|\s)" + re.escape(" ".join(cells)) + r"(\s|$)"))


def test_a_failing_target_is_flagged_filtered_and_its_state_shown(console: Console, page: Page) -> None:
    sns = console.simulate()
    good, bad = Receiver(), Receiver(answer=lambda r: 500)
    with serve(good.app()) as ok_url, serve(bad.app()) as bad_url:
        healthy = made(console, ROUTES, name="steady", topic=f"dma/report/{sns[0]}/heartbeat", url=f"{ok_url}/ok")
        failing = made(console, ROUTES, name="failing", topic="dma/report/+/heartbeat", url=f"{bad_url}/fail")
        callback = made(console, CALLBACKS, type="device", url=f"{bad_url}/status")
        try:
            log_in(page, console)
            page.get_by_role("link", name="Routes", exact=True).click()
            listed = page.get_by_role("table", name="Message routes")
            bad_row, good_row = row(listed, str(failing["id"]), "failing"), row(listed, str(healthy["id"]), "steady")
            expect(bad_row).to_contain_text("breaker open", timeout=30_000)  # the receiver answers 500
            expect(bad_row).to_contain_text("HTTP 500")
            expect(good_row).to_contain_text("enabled")
            expect(good_row.get_by_role("cell").nth(5)).to_have_text("healthy")  # the Health column
            page.get_by_label("Show").select_option("attention")
            expect(listed.get_by_role("row")).to_have_count(2)  # the header and the failing route
            expect(page.get_by_text(re.compile(r"^\d+ routes, 1 needs attention\.$"))).to_be_visible()
            page.get_by_label("Show").select_option("")
            assert console.api.put(ROUTES, json={"id": healthy["id"], "enabled": False}).status_code == 200
            expect(good_row).to_contain_text("disabled", timeout=15_000)  # the list follows (every 5 s), no reload
            shot(page, "routes")

            listed.get_by_role("link", name=f"Open route {failing['id']}").click()
            info = page.get_by_role("table", name=f"route {failing['id']}")
            expect(row(info, "Breaker")).to_contain_text("open")
            expect(row(info, "Last error")).to_contain_text("HTTP 500")
            expect(row(info, "State")).to_contain_text("enabled")
            shot(page, "route-failing")

            # a callback likewise: a device that comes and goes is a status change its receiver refuses
            console.simulate_more("CBFAIL", 1, "--duration", "3")
            page.get_by_role("link", name="Callbacks", exact=True).click()
            flagged = row(page.get_by_role("table", name="Status change callbacks"), str(callback["id"]), "device")
            expect(flagged).to_contain_text("failing", timeout=30_000)
            expect(flagged).to_contain_text("HTTP 500")
        finally:
            gone(console, ROUTES, healthy["id"], failing["id"])
            gone(console, CALLBACKS, callback["id"])


def test_charts_draw_the_series_with_a_table_each(console: Console, page: Page) -> None:
    sns = console.simulate()
    rec = Receiver()
    with serve(rec.app()) as hook:
        route = made(console, ROUTES, name="charted", topic="dma/report/+/heartbeat", url=f"{hook}/charted")
        try:
            log_in(page, console)
            online = page.get_by_role("figure", name=re.compile("^Devices online"))
            expect(online.get_by_role("img")).to_have_attribute("aria-label", re.compile(r"online: latest 2,"),
                                                                  timeout=20_000)
            shot(page, "dashboard")
            online.get_by_text("Table", exact=True).click()
            expect(online.get_by_role("row").last.get_by_role("cell").nth(1)).to_have_text("2")
            messages = page.get_by_role("figure", name=re.compile("^Messages received"))
            messages.get_by_text("Table", exact=True).click()
            counted = messages.get_by_role("row").filter(has=page.get_by_role("cell", name=re.compile(r"^[1-9]\d*$")))
            expect(counted.first).to_be_visible(timeout=20_000)  # the devices report every second
            page.get_by_role("group", name="Activity: time range").get_by_role("button", name="Last day").click()
            expect(online.locator("figcaption")).to_contain_text("last day")
            expect(online.get_by_role("table")).to_be_visible()  # the opened table stays open
            rows = online.get_by_role("row")
            assert 2 <= rows.count() <= 146  # 10-minute points over a day (those with data), and the header

            page.goto(f"{console.url}/console/#/routes/{route['id']}")
            chart = page.get_by_role("figure", name=re.compile(f"^Deliveries of route {route['id']}"))
            chart.get_by_text("Table", exact=True).click()
            delivered = chart.get_by_role("row").filter(has=page.get_by_role("cell", name=re.compile(r"^[1-9]\d*$")))
            expect(delivered.first).to_be_visible(timeout=20_000)
            shot(page, "route")
            # its attempts, 20 a page (the engine keeps 200): two devices report every second
            pages = page.get_by_role("navigation", name="Delivery pages")
            expect(pages).to_contain_text(re.compile(r"Page 1 of [2-9]"), timeout=20_000)
            expect(page.get_by_role("table", name="Deliveries", exact=True).get_by_role("row")).to_have_count(21)
            pages.get_by_role("button", name="Next page").click()
            expect(pages).to_contain_text(re.compile(r"Page 2 of [2-9]"))

            # a device's page: its share of time online, from its presence log
            page.goto(f"{console.url}/console/#/device/{sns[0]}")
            presence = page.get_by_role("figure", name=re.compile(f"^Time online of {sns[0]}"))
            expect(presence.get_by_role("img")).to_have_attribute(
                "aria-label", re.compile(r"online \(share\): latest 1,"), timeout=20_000)
            presence.get_by_text("Table", exact=True).click()
            expect(presence.get_by_role("row").last.get_by_role("cell").nth(1)).to_have_text("1")
            shot(page, "device-presence")
        finally:
            gone(console, ROUTES, route["id"])


def test_the_command_history_says_what_ran_who_sent_it_and_what_came_back(console: Console, page: Page) -> None:
    sns = console.simulate()
    log_in(page, console)
    page.get_by_role("link", name="Commands", exact=True).click()
    form = page.get_by_role("form", name="Send a command")
    expect(form.get_by_label("Expires after (s)")).to_have_value("86400")  # what the API gives, not "never"
    expect(form).to_contain_text('Default 86400 (1 day), at most 2592000 (30 days); there is no "never".')
    marker = f"console-{uuid.uuid4().hex[:6]}"
    for shcmd in ("whoami", f"echo {marker}"):
        form.get_by_label("Devices").fill(sns[0])
        form.get_by_label("Shell command (shcmd)").fill(shcmd)
        form.get_by_role("button", name="Send").click()
        expect(page.get_by_role("region", name="Sent: sh to 1 device(s)").get_by_text("success")).to_be_visible(
            timeout=30_000)
    listed = page.get_by_role("table", name="Commands")
    whoami, echo = listed.get_by_role("row", name=re.compile("sh: whoami")), \
        listed.get_by_role("row", name=re.compile(f"sh: echo {marker}"))
    result = 6  # the Result column
    expect(whoami.get_by_role("cell").nth(3)).to_have_text("admin")  # From: the logged-in user
    expect(whoami.get_by_role("cell").nth(result)).to_have_text(pwd.getpwuid(os.geteuid()).pw_name)
    expect(echo.get_by_role("cell").nth(result)).to_have_text(marker)
    cid = echo.get_by_role("cell").first.inner_text()
    stored = console.api.get("/iot/api/v1/remotectl/commands", params={"id": cid}).json()["data"]
    assert (stored["from"], stored["d"], stored["expires"], stored["state"]) == (
        "admin", {"shcmd": f"echo {marker}"}, 86400, 2)
    shot(page, "commands")


def test_connections_and_sessions_are_paged_lists_searched_by_client_id(console: Console, page: Page) -> None:
    console.simulate()
    console.simulate_more("CLIENT", 11)
    wait_for(lambda: console.api.get("/iot/api/v1/monitor/devices", params={"sn": "CLIENT", "online": "true"}
                                     ).json()["data"]["total"] == 11, timeout=30, interval=0.3, what="11 more clients")
    log_in(page, console)
    page.get_by_role("link", name="Clients", exact=True).click()
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Search").click()
    connections = page.get_by_role("table", name="Connections")
    expect(connections.get_by_role("row")).to_have_count(11)
    pages = page.get_by_role("navigation", name="Connections pages")
    expect(pages).to_contain_text(re.compile(r"Page 1 of [2-9]"))
    pages.get_by_role("button", name="Next page").click()
    expect(pages).to_contain_text(re.compile(r"Page 2 of [2-9]"))
    page.get_by_label("Client id contains").fill("CLIENT0003")
    page.get_by_role("button", name="Search").click()
    expect(connections.get_by_role("row")).to_have_count(2)
    expect(row(connections, "CLIENT0003")).to_be_visible()
    sessions = page.get_by_role("table", name="Sessions")
    expect(sessions.get_by_role("row")).to_have_count(2)
    expect(row(sessions, "CLIENT0003", "yes")).to_be_visible()
    shot(page, "clients")


def test_dead_letters_are_listed_inspected_and_replayed(console: Console, page: Page) -> None:
    answer = [500]
    rec = Receiver(answer=lambda r: answer[0])
    topic = f"console/dead/{uuid.uuid4().hex[:8]}"
    with serve(rec.app()) as hook:
        route = made(console, ROUTES, name="dead letters", topic=topic, url=f"{hook}/dead")
        try:
            log_in(page, console)
            page.goto(f"{console.url}/console/#/routes/{route['id']}")
            console.publish(topic, '{"n": 1}')
            dead = page.get_by_role("table", name="Dead letters")
            expect(dead.get_by_role("row")).to_have_count(2, timeout=20_000)  # after the first try and two retries
            assert len(rec.received) == 3
            delivery = rec.received[0].headers["webhook-id"]
            page.get_by_role("button", name=f"Inspect {delivery}").click()
            letter = page.get_by_role("region", name=f"Dead letter {delivery}")
            expect(letter.get_by_label("dead letter body")).to_contain_text(f'"topic": "{topic}"')
            expect(row(letter.get_by_role("table"), "Attempts")).to_have_text(re.compile("3$"))
            expect(row(letter.get_by_role("table"), "Last error")).to_contain_text("HTTP 500")
            shot(page, "dead-letter")

            answer[0] = 200
            letter.get_by_role("button", name=f"Replay {delivery}").click()
            expect(page.get_by_role("status").filter(has_text="Replayed")).to_have_text("Replayed 1.")
            wait_for(lambda: len(rec.received) == 4, timeout=15, what="the replayed delivery")
            assert rec.received[3].headers["webhook-id"] == delivery and rec.received[3].body == rec.received[0].body
            expect(page.get_by_text("Dead letters: none.")).to_be_visible()
            expect(letter).to_contain_text("No longer a dead letter")

            answer[0] = 500
            console.publish(topic, '{"n": 2}')
            console.publish(topic, '{"n": 3}')
            expect(dead.get_by_role("row")).to_have_count(3, timeout=30_000)
            letters = {dead.get_by_role("row").nth(n).get_by_role("cell").nth(1).inner_text() for n in (1, 2)}
            answer[0], before = 200, len(rec.received)
            page.get_by_role("button", name="Replay all").click()
            expect(page.get_by_role("status").filter(has_text="Replayed")).to_have_text("Replayed 2.")
            expect(page.get_by_text("Dead letters: none.")).to_be_visible()
            wait_for(lambda: len(rec.received) >= before + 2, timeout=15, what="the letters replayed")
            assert {r.headers["webhook-id"] for r in rec.received[before:]} == letters
        finally:
            gone(console, ROUTES, route["id"])


def probe(page: Page) -> None:
    page.evaluate("document.activeElement.consoleProbe = 'kept'")


def refreshed(stamp: Any) -> None:
    """Waits for a live page to draw a newer time in `stamp` (a <time>): the devices report every second."""
    before = stamp.get_attribute("datetime")
    expect(stamp).not_to_have_attribute("datetime", before or "", timeout=15_000)


def still_focused(page: Page) -> bool:
    return bool(page.evaluate("document.activeElement.consoleProbe === 'kept'"))


def test_live_pages_keep_focus_scroll_and_ticks(console: Console, page: Page) -> None:
    sns = console.simulate()
    log_in(page, console)
    page.goto(f"{console.url}/console/#/device/{sns[0]}")
    page.get_by_role("link", name="All commands of this device").focus()
    probe(page)
    refreshed(row(page.get_by_role("table", name="Presence"), "Last active").locator("time"))
    assert still_focused(page), page.evaluate("document.activeElement.outerHTML")

    page.get_by_role("link", name="Devices", exact=True).first.click()
    tick = page.get_by_role("checkbox", name=f"select {sns[1]}")
    tick.check()
    tick.focus()
    probe(page)
    refreshed(row(page.get_by_role("table", name="Devices"), sns[1]).get_by_role("cell").nth(5).locator("time"))
    assert still_focused(page) and tick.is_checked()

    ids = [made(console, ROUTES, name=f"scroll {n}", topic=f"console/scroll/{n}", url="http://127.0.0.1:9/x",
                enabled=False)["id"] for n in range(40)]
    try:
        page.set_viewport_size({"width": 1280, "height": 600})
        page.get_by_role("link", name="Routes", exact=True).click()
        link = page.get_by_role("link", name=f"Open route {ids[30]}")
        link.scroll_into_view_if_needed()
        link.focus()
        probe(page)
        scrolled = page.evaluate("window.scrollY")
        assert scrolled > 0
        ids.append(made(console, ROUTES, name="late", topic="console/late", url="http://127.0.0.1:9/x",
                        enabled=False)["id"])
        expect(page.get_by_role("link", name=f"Open route {ids[-1]}")).to_be_attached(timeout=15_000)
        assert still_focused(page) and page.evaluate("window.scrollY") == scrolled
    finally:
        gone(console, ROUTES, *ids)


def test_times_are_in_the_browsers_zone_and_say_which(console: Console, browser: Browser) -> None:
    sns = console.simulate()
    for page in open_page(browser, timezone_id="Asia/Kolkata"):
        log_in(page, console)
        page.goto(f"{console.url}/console/#/device/{sns[0]}")
        shown = page.get_by_role("table", name="Presence").locator("time").first
        expect(shown).to_have_text(re.compile(r" GMT\+5:30$"))
        utc = datetime.fromisoformat((shown.get_attribute("datetime") or "").replace("Z", "+00:00"))
        local = utc.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
        assert shown.inner_text() == f"{local} GMT+5:30"
        assert shown.get_attribute("title") in ("Asia/Kolkata", "Asia/Calcutta")  # ICU's name, or IANA's


def test_a_slow_call_shows_loading_and_a_hung_one_a_readable_timeout(console: Console, browser: Browser) -> None:
    console.simulate()
    held: list[Route] = []
    for page in open_page(browser):
        page.add_init_script("sessionStorage.setItem('adapter.console.timeoutMs', '1500')")
        log_in(page, console)
        page.route(re.compile(r"/iot/api/v1/monitor/devices\?"), lambda route: held.append(route))  # never answered
        page.get_by_role("link", name="Devices", exact=True).first.click()
        expect(page.get_by_text("Loading devices…")).to_be_visible()
        expect(page.locator("header").get_by_role("status")).to_have_text("Loading…")  # a call is slow
        alert = page.get_by_role("alert")
        expect(alert).to_have_text("the API did not answer within 1.5 s")
        expect(page.locator("header").get_by_role("status")).to_be_hidden()
        page.unroute(re.compile(r"/iot/api/v1/monitor/devices\?"))
        expect(page.get_by_role("table", name="Devices")).to_be_visible(timeout=15_000)  # the next refresh
        expect(alert).to_have_count(0)  # the message goes with the error
        assert held


def stray_text(page: Page) -> list[str]:
    """Text nodes of the page that are a leaked JavaScript value ("null", "undefined", …)."""
    return page.evaluate("""(stray) => {
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      const found = [];
      while (walker.nextNode()) if (stray.includes(walker.currentNode.data.trim())) found.push(walker.currentNode.data);
      return found;
    }""", list(STRAY))


def test_no_page_shows_stray_text_to_a_viewer_and_the_icon_is_there(console: Console, browser: Browser) -> None:
    sn = console.simulate()[0]
    route = made(console, ROUTES, name="seen", topic="a/b", url="http://127.0.0.1:9/x", enabled=False)
    cb = made(console, CALLBACKS, type="device", url="http://127.0.0.1:9/y", enabled=False)
    missing: list[str] = []
    try:
        for page in open_page(browser):
            page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
            log_in(page, console, VIEWER, VIEWER_PASSWORD)
            for name in ("dashboard", "devices", f"device/{sn}", "commands", "clients", "routes",
                         f"routes/{route['id']}", "callbacks", f"callbacks/{cb['id']}"):
                page.goto(f"{console.url}/console/#/{name}")
                expect(page.get_by_role("heading", level=1)).to_be_visible()
                page.wait_for_load_state("networkidle")
                assert stray_text(page) == [], name
            icon = page.locator("link[rel=icon]").get_attribute("href")
            answer = page.request.get(f"{console.url}/console/{icon}")
            assert answer.status == 200 and answer.headers["content-type"] == "image/svg+xml"
            assert page.request.get(f"{console.url}/favicon.ico").status == 200
            assert missing == []
    finally:
        gone(console, ROUTES, route["id"])
        gone(console, CALLBACKS, cb["id"])


@pytest.fixture(autouse=True)
def _quiet(console: Console) -> Iterator[None]:
    """Each test leaves no target behind (a failing one would keep the worker busy for the next)."""
    yield
    for path in (ROUTES, CALLBACKS):
        left = console.api.get(path).json()["data"]["list"]
        assert not left, f"{path} left {left}"
