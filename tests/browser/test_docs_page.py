"""Swagger UI at /iot/api/v1/docs in a real browser, under its Content-Security-Policy: it renders the document's
operations with no policy violation, and a token given to Authorize is kept in memory only (issue 20)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.conftest import login

pytestmark = pytest.mark.browser


def test_the_docs_page_works_under_its_policy_and_keeps_no_token(page: Page, live: str) -> None:
    refused: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            refused.append(message.text)

    page.on("console", seen)
    with httpx.Client(base_url=live) as c:
        token = login(c)
    page.goto(f"{live}/iot/api/v1/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 20
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("EMQX device adapter")  # styled
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".auth-container input").first.fill(token)
    page.get_by_role("button", name="Apply credentials").click()
    expect(page.get_by_role("button", name="Logout").first).to_be_visible()
    stored = page.evaluate("() => JSON.stringify(Object.assign({}, window.localStorage))")
    assert token not in stored
    assert refused == []
