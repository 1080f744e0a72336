"""The console's rollouts page in Debian's chromium against `adapter dev` with simulated devices: a dry-run preview,
a rollout started from the form, its progress bar and counts updating live to the end, the per-device table linking
to each command, and a pause/resume/cancel on a slow one."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Console, log_in, shot

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_a_rollout_is_previewed_started_and_followed_live(console: Console, page: Page) -> None:
    sns = console.simulate()
    log_in(page, console)
    page.get_by_role("link", name="Rollouts", exact=True).click()
    form = page.get_by_role("form", name="Start a rollout")
    form.get_by_label("Shell command (sh)").fill("whoami")
    form.get_by_label("SN prefix").fill("CONSOLE")
    form.get_by_label("Per minute", exact=True).fill("6000")
    form.get_by_role("button", name="Preview (dry run)").click()
    expect(form.get_by_role("status", name="preview")).to_contain_text(f"{len(sns)} devices match now")
    form.get_by_role("button", name="Start rollout").click()
    expect(page).to_have_url(re.compile(r"#/rollout/\d+$"))
    progress = page.get_by_role("region", name="progress")
    expect(progress.locator("span.badge").first).to_have_text("succeeded", timeout=30_000)
    expect(progress.get_by_role("progressbar")).to_have_attribute("value", str(len(sns)))
    expect(progress.get_by_role("table", name="Counts")).to_contain_text(f"succeeded{len(sns)}")
    runs = page.get_by_role("table", name="Executions")
    expect(runs.get_by_role("row")).to_have_count(1 + len(sns))
    shot(page, "rollout")
    runs.get_by_role("link", name=sns[0]).click()
    expect(page).to_have_url(re.compile(f"#/device/{sns[0]}$"))


def test_a_slow_rollout_is_paused_resumed_and_cancelled(console: Console, page: Page) -> None:
    console.simulate()
    made = console.api.post("/iot/api/v1/remotectl/rollouts", json={
        "command": {"command": "sh", "body": {"shcmd": "whoami"}, "publishNow": False},
        "selector": {"sns": console.sns}, "rate": {"perMinute": 1}})  # the second device's turn is a minute away
    rid = made.json()["data"]["id"]
    log_in(page, console)
    page.goto(f"{console.url}/console/#/rollout/{rid}")
    progress = page.get_by_role("region", name="progress")
    progress.get_by_role("button", name="Pause").click()
    expect(progress.locator("span.badge").first).to_have_text("paused")
    progress.get_by_role("button", name="Resume").click()
    expect(progress.locator("span.badge").first).to_have_text("running")
    progress.get_by_role("button", name="Cancel").click()
    expect(progress.locator("span.badge").first).to_have_text("cancelled")
    expect(progress.get_by_role("button", name="Cancel")).to_have_count(0)
