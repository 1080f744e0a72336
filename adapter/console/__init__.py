"""The web console: static ES modules, CSS and one HTML page, served by the API at `/console/`."""

# (seed: "iot_web_console") The page is a same-origin client of the v1 API (no CORS, no CDN, no build step).
# `routes()` is what the app mounts; every answer carries a Content-Security-Policy that allows only this
# origin's scripts, styles and API.

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

PATH = "/console"
DIRECTORY = Path(__file__).parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-cache")]


class ConsoleFiles:
    """The package's static files (index.html for the folder), with the console's security headers."""

    def __init__(self) -> None:
        self.files = StaticFiles(directory=DIRECTORY, html=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.files(scope, receive, send_with_headers)


async def _to_folder(_: object) -> RedirectResponse:
    return RedirectResponse(f"{PATH}/", status_code=308)


async def _to_icon(_: object) -> RedirectResponse:
    """Browsers and tools that ask the origin's root for its icon get the console's."""
    return RedirectResponse(f"{PATH}/favicon.svg", status_code=308)


def routes() -> list[BaseRoute]:
    return [Route(PATH, _to_folder, methods=["GET", "HEAD"]), Route("/favicon.ico", _to_icon, methods=["GET", "HEAD"]),
            Mount(PATH, app=ConsoleFiles(), name="console")]
