"""The console's files as the app serves them (issue 13): same origin, a strict CSP, ES modules with a
JavaScript type, nothing but the static folder."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from adapter import console

pytestmark = pytest.mark.layout_free  # static files: run once, on one Redis


def test_console_redirects_to_its_folder_and_serves_the_page(client: httpx.Client) -> None:
    r = client.get("/console", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/console/"
    page = client.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_every_module_the_page_imports_is_served_as_javascript(client: httpx.Client) -> None:
    static = Path(console.__file__).parent / "static"
    for module in sorted(static.glob("*.js")):
        r = client.get(f"/console/{module.name}")
        assert r.status_code == 200, module.name
        assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
        for imported in re.findall(r'from "\./([a-z]+\.js)"', r.text):
            assert (static / imported).is_file(), f"{module.name} imports a missing {imported}"
        assert "https://" not in r.text.replace("https://example.com", ""), f"{module.name} loads from elsewhere"
    assert client.get("/console/console.css").headers["content-type"].startswith("text/css")


def test_the_icon_is_served_at_the_root_and_in_the_folder(client: httpx.Client) -> None:
    page = client.get("/console/").text
    assert '<link rel="icon" href="favicon.svg" type="image/svg+xml">' in page
    icon = client.get("/favicon.ico", follow_redirects=True)
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.url.path == "/console/favicon.svg" and icon.text.startswith("<svg")


def test_only_the_static_folder_is_served(client: httpx.Client) -> None:
    for path in ("/console/__init__.py", "/console/../app.py", "/console/static/index.html", "/console/nope.js"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["status"] == "err"
