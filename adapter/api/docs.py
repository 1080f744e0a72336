"""The API's own description: the OpenAPI 3.1 document as is (no envelope, no token: Swagger UI, code
generators and schemathesis read it straight from the URL) and Swagger UI for it, from the static files the
`swagger-ui-py` package ships (nothing is loaded from a CDN).

The page has no inline script (its start-up is `docs/init.js`) and answers with a Content-Security-Policy that
allows only this origin's scripts, so text the document shows cannot run as script there; the token given to
*Authorize* stays in the page's memory (no `persistAuthorization`: nothing in localStorage for a script to read
later)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from adapter.http.endpoint import Call, Endpoint

PREFIX = "/iot/api/v1"
STATIC = f"{PREFIX}/docs/static"

INIT = f"{PREFIX}/docs/init.js"
# relative URLs: the page works behind a proxy that serves the API under a path of its own
PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>EMQX device adapter, v1 API</title>
<link rel="stylesheet" href="docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/static/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/static/swagger-ui-bundle.js" charset="utf-8"></script>
<script src="docs/static/swagger-ui-standalone-preset.js" charset="utf-8"></script>
<script src="docs/init.js" charset="utf-8"></script>
</body>
</html>
"""
# `url` is relative to the page (/iot/api/v1/docs): the document next to it
INIT_JS = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
});
"""
# scripts from this origin only; Swagger UI writes inline styles of its own (inline styles run no script);
# its icons are data: URLs; it fetches the document and "Try it out" requests from this origin only
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def swagger_ui_dir() -> Path:
    """The `static` folder of the swagger-ui-py package (found without importing its framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def document_bytes(doc: dict[str, object]) -> bytes:
    return orjson.dumps(doc)


async def openapi_json(call: Call) -> Response:
    body: bytes = call.request.app.state.openapi_bytes
    return Response(body, media_type="application/json")


async def api_docs(call: Call) -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)


async def init_js(request: Request) -> Response:
    return Response(INIT_JS, media_type="text/javascript; charset=utf-8", headers=HEADERS)


ENDPOINTS = [
    Endpoint("GET", f"{PREFIX}/openapi.json", openapi_json, "This document, as is (OpenAPI 3.1)", access="public",
             tag="ops", envelope=False, response={"type": "object", "required": ["openapi", "paths"]}),
    Endpoint("GET", f"{PREFIX}/docs", api_docs, "Swagger UI for this document", access="public", tag="ops",
             media_type="text/html"),
]


class _WithHeaders:
    """An ASGI app's answers, with HEADERS added."""

    def __init__(self, app: StaticFiles) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def routes() -> list[BaseRoute]:
    """The page's start-up script, and Swagger UI's script, styles and icons (outside the OpenAPI document)."""
    return [Route(INIT, init_js, methods=["GET", "HEAD"]),
            Mount(STATIC, app=_WithHeaders(StaticFiles(directory=swagger_ui_dir())), name="docs-static")]
