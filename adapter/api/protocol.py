"""The API's HTTP/1.1 protocol: uvicorn's httptools protocol, with `POST /emqx/events` answered without ASGI.

Every EMQX event is one such request, so its cost per request is the API's capacity. uvicorn serves a request as
an ASGI cycle: a scope, receive and send callables, message dicts, the head and the body written in two send
calls. `IngestProtocol` keeps uvicorn's parsing, connection handling, keep-alive and pipelining (requests on one
connection are answered in order: an `IngestCycle` takes the place of uvicorn's RequestResponseCycle in its
pipeline) and answers an ingest request itself: `ingest.answer` on the headers and the body, the whole response
in one write. Every other request, and an ingest request uvicorn would treat specially (an upgrade, a query
string, a concurrency limit), goes the ASGI way unchanged; the ASGI path (`ingest.serve`) answers the ingest
alike under any other server.

A train: EMQX pipelines up to 100 requests on each of its connections. An ingest request behind ingest requests
still being answered starts at once (uvicorn would hold it until the one before is answered): its effects are
submitted after theirs (`Turn`, adapter/ingest/turns.py) and its answer written after theirs, so a connection's
requests share the batcher's rounds and keep their order. Behind a request of another kind, or more than MAX_AHEAD
ahead, it waits in uvicorn's pipeline; uvicorn's end-of-answer step (the next held request, the keep-alive timer)
runs once the train's last answer is out.

`adapter api` runs uvicorn with this class (adapter/cli.py). It uses what uvicorn's protocol and cycle share
(`cycle`, `pipeline`, `flow`, `_start_asgi_task`, `on_response_complete`); the tests in
tests/integration/test_ingest_protocol.py hold it to uvicorn's behaviour on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.responses import Response
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from adapter.api import ingest
from adapter.errors import AppError
from adapter.http.envelope import check_declared, check_streamed
from adapter.ingest.turns import Once, Turn
from adapter.store.connections import Services

log = logging.getLogger("adapter.api.protocol")

PATH = ingest.PATH.encode()
MAX_AHEAD = 100  # ingest requests of one connection answered together at most (EMQX pipelines up to 100)
JSON_HEAD = b"content-type: application/json\r\ncontent-length: "


class IngestProtocol(HttpToolsProtocol):
    _services: Services | None = None
    _train = 0  # ingest requests started on this connection and not yet answered

    def on_headers_complete(self) -> None:
        svc = self._services or self._find_services()
        if (svc is None or self.url != PATH or self.parser.get_method() != b"POST" or self.parser.should_upgrade()
                or self.limit_concurrency is not None):
            super().on_headers_complete()
            return
        version = self.parser.get_http_version()
        existing = self.cycle
        ahead = existing if isinstance(existing, IngestCycle) and not existing.response_complete else None
        cycle = IngestCycle(self, svc, keep_alive=version != "1.0" and self.parser.should_keep_alive(), ahead=ahead)
        self.cycle = cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)
        elif ahead is not None and not self.pipeline and self._train < MAX_AHEAD:
            # pipelined behind ingest requests still being answered: it goes now, in their train (its effects
            # submitted after theirs, its answer written after theirs)
            self._start_asgi_task(cycle, self.app)
        else:  # behind another request, or too many ahead: uvicorn starts it when the one before is answered
            cycle.ahead = None
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if isinstance(cycle, IngestCycle):
            self._train += 1
            before = cycle.ahead.turn if cycle.ahead is not None else None
            cycle.turn = Turn(before.done if before is not None and not before.done.set else None)
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        """An answer went out. While more of a train of ingest requests are still to be answered, it is only
        counted: the next request uvicorn holds back (and its keep-alive timer) wait for the train's last answer."""
        if self._train > 1:
            self.server_state.total_requests += 1
            return
        super().on_response_complete()

    def ingest_ended(self) -> None:
        self._train -= 1

    def _find_services(self) -> Services | None:
        """The app's Services (adapter.app sets them in its lifespan), through uvicorn's middleware wrappers."""
        app: Any = self.app
        while app is not None:
            svc = getattr(getattr(app, "state", None), "services", None)
            if svc is not None:
                self._services = svc
                return svc
            app = getattr(app, "app", None)
        return None


class IngestCycle:
    """One ingest request, with the attributes uvicorn's protocol reads and sets on its RequestResponseCycle
    (`body`, `more_body`, `message_event`, `response_complete`, `disconnected`, `keep_alive`, `on_response`) and
    its `run_asgi`, which answers the request instead of calling the app."""

    def __init__(self, protocol: IngestProtocol, svc: Services, *, keep_alive: bool,
                 ahead: IngestCycle | None = None) -> None:
        self.protocol = protocol
        self.ahead = ahead  # the request before this one in its train: answered first
        self.turn: Turn | None = None  # set when it starts
        self.answered = Once()
        self.svc = svc
        self.headers = protocol.headers
        self.transport = protocol.transport
        self.flow: FlowControl = protocol.flow
        self.default_headers = protocol.server_state.default_headers
        self.waiting_for_100_continue = protocol.expect_100_continue
        self.keep_alive = keep_alive
        self.on_response = protocol.on_response_complete
        self.message_event = asyncio.Event()
        self.body = bytearray()
        self.more_body = True
        self.disconnected = False
        self.response_complete = False

    async def run_asgi(self, app: object) -> None:
        started = time.perf_counter()
        try:
            auth = declared = None
            for name, value in self.headers:
                if name == b"authorization":
                    auth = value
                elif name == b"content-length":
                    declared = value
            answered = await ingest.answer(self.svc, auth, lambda limit: self._read(declared, limit), self.turn)
            if isinstance(answered, bytes):
                await self._write(200, JSON_HEAD + b"%d\r\n" % len(answered), answered)
            else:
                await self._write_response(answered)
            self.svc.metrics.observe("POST", ingest.PATH, time.perf_counter() - started)
        except Exception:  # not an answer's error (those are answered): the connection's, or a bug here
            log.exception("ingest: answering on the connection failed")
            self.transport.close()
        except BaseException:  # cancelled (the server going down): the connection goes with it
            if not self.response_complete:
                self.transport.close()
            raise
        finally:
            self.on_response = _nothing  # as uvicorn's cycle: the protocol's callback is not kept alive
            if self.turn is not None:
                self.turn.done.fire()  # an event refused before its submit lets the next one go
            self.answered.fire()
            self.ahead = None
            self.protocol.ingest_ended()

    async def _read(self, declared: bytes | None, limit: int) -> bytes:
        """The body (mostly in already: the parser fed it before this task ran), 413 past `limit`."""
        check_declared(declared, limit)
        while self.more_body and not self.disconnected:
            check_streamed(len(self.body), limit)
            if self.waiting_for_100_continue and not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.waiting_for_100_continue = False
            self.flow.resume_reading()  # uvicorn's protocol pauses reading once a body passes 64 KiB
            await self.message_event.wait()
            self.message_event.clear()
        if self.more_body:
            raise AppError("invalid_params", "body: the client went away")
        check_streamed(len(self.body), limit)
        return bytes(self.body)

    async def _write_response(self, response: Response) -> None:
        head = b"".join(b"%s: %s\r\n" % (name, value) for name, value in response.raw_headers)
        await self._write(response.status_code, head, bytes(response.body))

    async def _write(self, status: int, head: bytes, body: bytes) -> None:
        """The response in one write (`head`: its own header lines), then what uvicorn's cycle does at the end;
        after the answer of the request ahead of it in its train."""
        if self.ahead is not None and not self.ahead.answered.set:
            await self.ahead.answered.wait()
        if self.transport.is_closing():  # the client left, or an answer ahead closed the connection
            self.disconnected = True
            return
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        parts = [STATUS_LINE[status]]
        parts += [b"%s: %s\r\n" % (name, value) for name, value in self.default_headers]
        parts.append(head)
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += [b"\r\n", body]
        self.transport.write(b"".join(parts))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


def _nothing() -> None:
    pass
