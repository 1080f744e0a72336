"""The recording receiver: an HTTP server on loopback that answers every delivery 200 at once and records
it (webhook-id, target, device, sequence number, time of arrival)."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from adapter_devtools.chaos.model import Arrival

ROUTE_PATH = "/route"
CALLBACK_PATH = "/callback"


def parse(path: str, delivery_id: str, body: bytes, at: float) -> Arrival:
    """A route delivery's device is the publishing client and its seq the payload's `seq`; a device callback's
    device is `sn` and its seq the presence `version`. The target is the delivery id's tail (`…:route:1`)."""
    doc = orjson.loads(body)
    head, _, target_id = delivery_id.rpartition(":")
    target = f"{head.rpartition(':')[2]}:{target_id}"
    if path == ROUTE_PATH:
        return Arrival(delivery_id, target, doc["clientid"], int(orjson.loads(doc["payload"])["seq"]), at)
    return Arrival(delivery_id, target, doc["sn"], int(doc["version"]), at)


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.malformed = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.monotonic()
        try:
            self.arrivals.append(parse(request.path, request.headers["webhook-id"], body, at))
        except (KeyError, ValueError, TypeError):
            self.malformed += 1
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(ROUTE_PATH, self._hook)
        app.router.add_post(CALLBACK_PATH, self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
