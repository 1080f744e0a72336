"""Start the API under uvicorn, after the checks that make a bad start a one-line error."""

from __future__ import annotations

import asyncio
import os

import uvicorn

from adapter.auth.users import UserStore
from adapter.settings import ConfigError, Settings
from adapter.store.connections import async_redis, check_redis
from adapter.store.keys import Keys


async def _has_users(settings: Settings) -> bool:
    client = async_redis(settings)
    try:
        return await UserStore(client, Keys.of(settings)).has_users()
    finally:
        await client.aclose()


def preflight(settings: Settings) -> None:
    """What `adapter api` needs before it serves: the ingest token, Redis (answering, holding a store of this
    process's key layout; RQ's Redis too), and a user or the admin password."""
    settings.require("ingest_token")
    check_redis(settings)
    if not settings.admin_password and not asyncio.run(_has_users(settings)):
        raise ConfigError("ADAPTER_ADMIN_PASSWORD is required while no user exists "
                          "(it creates user admin; or add one with `adapter user add`)")


def run_api(settings: Settings, *, host: str, port: int, workers: int = 1,
            protocol: type[asyncio.Protocol] | None = None) -> int:
    """Serve the API; `protocol`: the HTTP protocol class (the caller's: adapter.api.protocol), uvicorn's own by
    default."""
    preflight(settings)
    if workers > 1:
        os.environ.setdefault("ADAPTER_REDIS_URL", settings.redis_url)
        if settings.rq_redis_url:
            os.environ.setdefault("ADAPTER_RQ_REDIS_URL", settings.rq_redis_url)
    uvicorn.run("adapter.app:create_server_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=False, server_header=False, http=protocol or "auto",
                proxy_headers=trusted_proxies(settings) is not None, forwarded_allow_ips=trusted_proxies(settings))
    return 0


def trusted_proxies(settings: Settings) -> str | None:
    """Whom X-Forwarded-For is believed from (ADAPTER_TRUSTED_PROXIES; None: nobody). The login throttle
    counts per client address, so a client must not be able to name its own."""
    return settings.trusted_proxies.strip() or None
