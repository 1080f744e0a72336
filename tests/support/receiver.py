"""A callback receiver on loopback whose answers can change during a test; it records every request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """`answer` decides each reply: a status, (status, headers) or "hang" (never answers in time)."""

    answer: Callable[[Received], Any] = lambda r: 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            r = Received(request.url.path, dict(request.headers), await request.body(), time.monotonic())
            with self.lock:
                self.received.append(r)
            answer = self.answer(r)
            if answer == "hang":
                while not self.release.is_set():
                    await asyncio.sleep(0.05)
                answer = 200
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            return Response(b'{"ok":true}', status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r.body for r in self.received]
