"""The application factory: routes, error handlers and lifespan meet here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.exceptions
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from adapter import collector, console
from adapter.api import auth as auth_api
from adapter.api import brokers as brokers_api
from adapter.api import callbacks as callbacks_api
from adapter.api import commands as commands_api
from adapter.api import credentials as credentials_api
from adapter.api import devices as devices_api
from adapter.api import docs as docs_api
from adapter.api import emqx_hooks as emqx_hooks_api
from adapter.api import health as health_api
from adapter.api import ingest as ingest_api
from adapter.api import jobs as jobs_api
from adapter.api import rollouts as rollouts_api
from adapter.api import routes as routes_api
from adapter.api import stats as stats_api
from adapter.api import tags as tags_api
from adapter.auth.users import UserStore
from adapter.commands import rules as commands
from adapter.devices import calls as device_calls
from adapter.http.endpoint import Endpoint
from adapter.http.envelope import error_response
from adapter.http.openapi import document
from adapter.ingest.plan import Ingest
from adapter.settings import Settings
from adapter.stats import sampler
from adapter.store.batcher import confirm_of
from adapter.store.connections import batcher_for, build_services
from adapter.targets.forwarding import FORWARD
from adapter.targets.route_table import RouteTable

log = logging.getLogger("adapter.app")


def endpoints() -> list[Endpoint]:
    # devices last: its `/monitor/devices/{sn}` would capture GET routes below /monitor/devices/ declared after it
    return [*health_api.ENDPOINTS, *auth_api.ENDPOINTS, *ingest_api.ENDPOINTS, *brokers_api.ENDPOINTS,
            *callbacks_api.ENDPOINTS, *routes_api.ENDPOINTS, *commands_api.ENDPOINTS, *rollouts_api.ENDPOINTS,
            *emqx_hooks_api.ENDPOINTS, *credentials_api.ENDPOINTS, *jobs_api.ENDPOINTS, *stats_api.ENDPOINTS,
            *docs_api.ENDPOINTS, *tags_api.ENDPOINTS,
            *devices_api.ENDPOINTS]


async def _failure(request: Request, exc: Exception) -> Response:
    """Unknown routes, wrong methods and anything raised outside an Endpoint (a plain route, middleware)."""
    return error_response(exc, f"{request.method} {request.url.path}")


class App(Starlette):
    """Starlette, with `POST /emqx/events` (the hottest path, every EMQX event) answered before the middleware
    stack and the router: `ingest_api.serve` handles its own errors, so neither adds anything there."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if ingest_api.is_ingest(scope):
            await ingest_api.serve(self.state.services, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_server_app() -> Starlette:
    """The app of an `adapter api` process (uvicorn's factory, in each of its processes): the collector settles
    once the app has started (adapter/collector.py)."""
    return create_app(settle=True)


def create_app(settings: Settings | None = None, *, settle: bool = False) -> Starlette:
    settings = settings or Settings.from_env()
    eps = endpoints()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = build_services(settings)
        app.state.services = services
        batcher = batcher_for(services.redis, [*device_calls.SCRIPTS, FORWARD, *commands.SCRIPTS],
                              confirm_of(settings.ingest_wait_replicas, settings.ingest_wait_ms))
        routes = services.extras["routes"] = RouteTable(services.keys)
        services.extras["ingest"] = Ingest(batcher, services.keys, services.metrics, routes,
                                           max_peripherals=settings.max_peripherals_per_gateway,
                                           peripheral_ttl=settings.peripheral_ttl_days * 86_400)
        with contextlib.suppress(redis.exceptions.RedisError, OSError):  # else messages get 503 until it loads
            await routes.refresh(services.redis)
        stop = asyncio.Event()
        follower = asyncio.get_running_loop().create_task(routes.follow(services.redis, stop))
        try:
            await batcher.load_scripts()
        except redis.exceptions.RedisError as exc:
            log.warning("could not load the Redis scripts yet: %s", exc)
        if settings.admin_password:
            try:
                await UserStore(services.redis, services.keys).ensure_admin(settings.admin_password,
                                                                            reset=settings.dev)
            except redis.exceptions.RedisError as exc:
                log.warning("could not check the admin user: %s", exc)
        flusher = asyncio.get_running_loop().create_task(
            services.metrics.run(services.redis, services.keys.metrics()))
        sampling = asyncio.get_running_loop().create_task(sampler.run(services, stop))
        if settle:
            collector.settle()
        try:
            yield
        finally:
            stop.set()
            await follower
            await sampling
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            rq = services.extras.pop("rq", None)  # the RQ connection (store.connections.rq_connection) is sync
            if rq is not None:
                rq.close()
            await services.aclose()

    app = App(
        routes=[*(ep.route() for ep in eps), *docs_api.routes(), *console.routes()],
        exception_handlers={HTTPException: _failure, Exception: _failure},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # its redirect names the host of the request's Host header: 404 instead
    app.state.settings = settings
    app.state.openapi = document(eps)
    app.state.openapi_bytes = docs_api.document_bytes(app.state.openapi)
    return app
