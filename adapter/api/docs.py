"""The API's own description: the OpenAPI 3.1 document as is (no envelope, no token: Swagger UI, code
generators and schemathesis read it straight from the URL) and Swagger UI for it, from the static files the
`swagger-ui-py` package ships (nothing is loaded from a CDN)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from adapter.http.endpoint import Call, Endpoint

PREFIX = "/iot/api/v1"
STATIC = f"{PREFIX}/docs/static"

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
<script>
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
};
</script>
</body>
</html>
"""


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
    return Response(PAGE, media_type="text/html; charset=utf-8")


ENDPOINTS = [
    Endpoint("GET", f"{PREFIX}/openapi.json", openapi_json, "This document, as is (OpenAPI 3.1)", access="public",
             tag="ops", envelope=False, response={"type": "object", "required": ["openapi", "paths"]}),
    Endpoint("GET", f"{PREFIX}/docs", api_docs, "Swagger UI for this document", access="public", tag="ops",
             media_type="text/html"),
]


def mounts() -> list[Mount]:
    """Swagger UI's script, styles and icons."""
    return [Mount(STATIC, app=StaticFiles(directory=swagger_ui_dir()), name="docs-static")]
