"""Starting and stopping the dev broker: MQTT listener, event poster and REST API in one asyncio loop.

`DevBrokerRuntime.start()` binds both ports (0 picks a free one; the bound ports are then in
`mqtt_port` / `api_port`); `stop()` closes the listeners, lets connections post their
`client.disconnected` (reason `shutdown`), gives pending events `shutdown_grace` seconds, and leaves
no task behind. `serve()` wraps both for a caller that runs until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from adapter_devtools.devbroker.api import ApiState, create_app
from adapter_devtools.devbroker.auth import plugins
from adapter_devtools.devbroker.broker import DevBroker
from adapter_devtools.devbroker.channels import Channels
from adapter_devtools.devbroker.config import DevBrokerConfig
from adapter_devtools.devbroker.counters import Counters
from adapter_devtools.devbroker.delivery import EventPoster
from adapter_devtools.devbroker.emitter import Emitter
from adapter_devtools.devbroker.ids import GuidGen

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn inside someone else's loop: signals belong to the caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def broker_config(config: DevBrokerConfig) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{config.mqtt_host}:{config.mqtt_port}",
                                  "max_connections": 0}},
        "plugins": plugins(config),
        "session_expiry_interval": config.session_expiry,
    }


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class DevBrokerRuntime:
    def __init__(self, config: DevBrokerConfig) -> None:
        self.config = config
        self.counters = Counters()
        self.broker: DevBroker | None = None
        self.poster: EventPoster | None = None
        self._server: _Server | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def mqtt_port(self) -> int:
        assert self.broker is not None
        return int(self.broker._servers["default"].instance.sockets[0].getsockname()[1])

    @property
    def api_port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    async def start(self) -> None:
        config = self.config
        if config.api_auth is None:
            log.warning("devbroker: no ADAPTER_EMQX_API_KEY; the REST API accepts any caller")
        self._sock = _bind(config.api_host, config.api_port)
        self.poster = EventPoster(config.ingest_url, config.ingest_token, self.counters,
                                  retry_ttl=config.retry_ttl, max_pending=config.max_pending_events)
        emitter = Emitter(config.node, self.poster, config.message_topics)
        self.broker = DevBroker(broker_config(config), session_expiry=config.session_expiry, emitter=emitter,
                                channels=Channels(), counters=self.counters, guids=GuidGen(config.node))
        try:
            await self.broker.start()
            await self._start_api(ApiState(self.broker, self.poster, config))
        except BaseException:
            await self.stop()
            raise

    async def _start_api(self, state: ApiState) -> None:
        assert self._sock is not None
        uv_config = uvicorn.Config(create_app(state), lifespan="off", log_config=None, log_level="warning",
                                   access_log=False, ws="none", timeout_graceful_shutdown=1)
        self._server = _Server(uv_config)
        self._api_task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._api_task.done():
                self._api_task.result()
                raise RuntimeError("devbroker: the REST API did not start")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is not None and self._api_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._api_task, 5)
        if self.broker is not None and self.broker.transitions.state == "started":
            await self.broker.shutdown()
            await self.broker.drain_connections(self.config.shutdown_grace)
        if self.poster is not None:
            await self.poster.close(self.config.shutdown_grace)
        if self._sock is not None:
            self._sock.close()


async def serve(config: DevBrokerConfig, ready: asyncio.Event | None = None) -> None:
    """Run the dev broker until cancelled; `ready` is set once both ports accept connections."""
    runtime = DevBrokerRuntime(config)
    await runtime.start()
    try:
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runtime.stop()
