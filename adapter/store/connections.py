"""Every Redis client the service builds (`async_redis`, `sync_redis`), and the shared clients of one API process
(`Services`), built in the app's lifespan and handed to handlers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from adapter.errors import AppError
from adapter.http.metrics import MetricsBuffer
from adapter.settings import ConfigError, Settings, redact_url
from adapter.store.keys import Keys


@dataclass
class Services:
    settings: Settings
    keys: Keys
    redis: aioredis.Redis
    extras: dict[str, Any] = field(default_factory=dict)
    metrics: MetricsBuffer = field(default_factory=MetricsBuffer)

    async def aclose(self) -> None:
        for extra in self.extras.values():
            close = getattr(extra, "aclose", None)
            if close is not None:
                await close()
        await self.redis.aclose()


def texts(record: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash as str -> str (the clients decode responses; this tells the type checker)."""
    return {str(k): str(v) for k, v in record.items()}


def async_redis(settings: Settings, *, decode: bool = True, socket_timeout: float = 5,
                max_connections: int | None = None) -> aioredis.Redis:
    """The one way this service builds an asyncio Redis client. With `max_connections`, callers beyond it wait
    for a connection (up to 10 s) instead of opening more (the delivery pump)."""
    options: dict[str, Any] = {"decode_responses": decode, "socket_connect_timeout": 2,
                               "socket_timeout": socket_timeout, "health_check_interval": 30}
    if max_connections is None:
        return aioredis.Redis.from_url(settings.redis_url, **options)
    pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=max_connections,
                                                    timeout=10, **options)
    return aioredis.Redis.from_pool(pool)  # closes the pool with the client


def sync_redis(settings: Settings, *, decode: bool = True) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, decode_responses=decode,
                                socket_connect_timeout=2, socket_timeout=10)


def check_redis(settings: Settings) -> None:
    """Fail with one line when Redis does not answer (used before a process starts serving)."""
    client = sync_redis(settings)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise ConfigError(f"Redis at {redact_url(settings.redis_url)} does not answer: {exc}") from None
    finally:
        client.close()


def build_services(settings: Settings) -> Services:
    return Services(settings=settings, keys=Keys.of(settings), redis=async_redis(settings))


def redis_unavailable() -> AppError:
    return AppError("unavailable", "storage unavailable, try again", headers={"Retry-After": "1"})


def rq_connection(svc: Services) -> redis.Redis:
    """The API process's one RQ connection, for enqueueing jobs (RQ wants a client that does not decode)."""
    conn = svc.extras.get("rq")
    if not isinstance(conn, redis.Redis):
        conn = svc.extras["rq"] = sync_redis(svc.settings, decode=False)
    return conn
