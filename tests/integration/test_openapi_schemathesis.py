"""The OpenAPI document against the live app: no 5xx, every response as documented (foundation, item 6).

schemathesis reads the document from the served URL as any client would (no token, no unwrapping), so what
is tested is what is published. The document is built from the same declarations as the routes, so this test
covers every endpoint that lands later without changes here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urljoin

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapter.app import endpoints
from adapter.settings import Settings
from tests.conftest import ADMIN_PASSWORD, INGEST_TOKEN, flush_store, new_prefix, store_client, store_env
from tests.support.fake_emqx import KEY, SECRET, FakeEmqx
from tests.support.servers import serve, serve_api

DB = int(os.environ.get("TEST_SCHEMA_DB", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
DOC_PATH = "/iot/api/v1/openapi.json"


@pytest.fixture(scope="module")
def live_api() -> Iterator[tuple[str, str]]:
    prefix = new_prefix()
    client = store_client(DB)
    flush_store(client, prefix)
    with serve(FakeEmqx().app()) as emqx, _app(emqx, prefix) as live:
        yield live
    flush_store(client, prefix)
    client.close()


@contextmanager
def _app(emqx: str, prefix: str) -> Iterator[tuple[str, str]]:
    s = Settings.from_env({**store_env(prefix, DB), "ADAPTER_ADMIN_PASSWORD": ADMIN_PASSWORD,
                           "ADAPTER_INGEST_TOKEN": INGEST_TOKEN, "ADAPTER_EMQX_API_URL": f"{emqx}/api/v5",
                           "ADAPTER_EMQX_API_KEY": KEY, "ADAPTER_EMQX_API_SECRET": SECRET,
                           "ADAPTER_LOGIN_MAX_FAILURES": "1000000",
                           "ADAPTER_LOGIN_MAX_FAILURES_PER_IP": "1000000"}, dotenv=None)
    with serve_api(s) as url:
        r = httpx.post(f"{url}/iot/api/v1/auth/login", json={"user": "admin", "password": ADMIN_PASSWORD})
        yield url, r.json()["data"]["token"]


@pytest.fixture(scope="module")
def served_schema(live_api: tuple[str, str]) -> BaseSchema:
    """The document as a client reads it: from the served URL, without a token, as is."""
    return schemathesis.openapi.from_url(live_api[0] + DOC_PATH)


# the operations to test, one test each (their cases come from the served document, `served_schema`)
OPERATIONS = [(ep.method, ep.path) for ep in endpoints()]


def test_the_document_is_served_raw_without_a_token(live_api: tuple[str, str]) -> None:
    url, _ = live_api
    r = httpx.get(url + DOC_PATH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"] == "3.1.0"  # the document itself, not an envelope around it
    assert set(doc["paths"]) >= {"/iot/api/v1/auth/login", "/healthz", "/readyz", DOC_PATH, "/iot/api/v1/docs"}
    schemathesis.openapi.from_dict(doc).validate()
    Draft202012Validator.check_schema(doc["components"]["schemas"]["Error"])
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_swagger_ui_is_served_from_here(live_api: tuple[str, str]) -> None:
    """`/iot/api/v1/docs`: an HTML page whose scripts and styles all load from this server (no CDN), pointing at
    the served document."""
    url, _ = live_api
    r = httpx.get(f"{url}/iot/api/v1/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                                                      "swagger-ui.css"}
    assert "//" not in "".join(assets), "assets must be served by the API itself"
    kinds = {"js": "javascript", "css": "text/css", "png": "image/png"}
    for asset in assets:
        got = httpx.get(urljoin(f"{url}/iot/api/v1/docs", asset))
        assert got.status_code == 200, asset
        assert kinds[asset.rsplit(".", 1)[-1]] in got.headers["content-type"], asset
        assert len(got.content) > 100, asset
    init = httpx.get(urljoin(f"{url}/iot/api/v1/docs", "docs/init.js")).text
    spec_url = re.search(r'url: "([^"]+)"', init)
    assert spec_url is not None
    assert httpx.get(urljoin(f"{url}/iot/api/v1/docs", spec_url.group(1))).json()["openapi"] == "3.1.0"
    assert httpx.get(f"{url}/iot/api/v1/docs/static/nothing.js").status_code == 404


def test_swagger_ui_runs_no_inline_script_and_keeps_no_token(live_api: tuple[str, str]) -> None:
    """The page and its files answer with a CSP that allows only this origin's scripts, the page has no inline
    script (its start-up is docs/init.js), and the token given to Authorize is not persisted (localStorage)."""
    url, _ = live_api
    r = httpx.get(f"{url}/iot/api/v1/docs")
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", r.text, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert "onload=" not in r.text.lower() and "javascript:" not in r.text.lower()
    for answer in (r, httpx.get(f"{url}/iot/api/v1/docs/init.js"),
                   httpx.get(f"{url}/iot/api/v1/docs/static/swagger-ui-bundle.js")):
        assert answer.status_code == 200
        policy = dict(p.strip().split(" ", 1) for p in answer.headers["content-security-policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'" and answer.headers["x-content-type-options"] == "nosniff"
    init = httpx.get(f"{url}/iot/api/v1/docs/init.js").text
    assert "persistAuthorization: false" in init and "localStorage" not in init


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_conforms(method: str, path: str, served_schema: BaseSchema, live_api: tuple[str, str]) -> None:
    _, token = live_api
    headers = {"Authorization": f"Bearer {token}"}
    if path == "/iot/api/v1/auth/logout":
        headers = {}  # logging out would end the shared token; the unauthenticated answer is checked instead
    operation = served_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    conforms()
