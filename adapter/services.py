"""The shared clients of one API process, built in the app's lifespan and handed to handlers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from adapter.errors import AppError
from adapter.keys import Keys
from adapter.metrics import MetricsBuffer
from adapter.settings import ConfigError, Settings, redact_url


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


def async_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.redis_url, decode_responses=True,
                                   socket_connect_timeout=2, socket_timeout=5,
                                   health_check_interval=30)


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
    return Services(settings=settings, keys=Keys(settings.key_prefix), redis=async_redis(settings))


def redis_unavailable() -> AppError:
    return AppError("unavailable", "storage unavailable, try again", headers={"Retry-After": "1"})
