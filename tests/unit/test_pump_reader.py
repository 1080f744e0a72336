"""The pump reads its streams through a client that never sends a command again by itself: redis-py's cluster
client retries a command after a connection error (3 times by default), and a retried XREADGROUP whose first
answer was lost reads past the entries the first one delivered to the group (they wait for a reclaim, out of
order). Seen on a 3+3 cluster with a primary killed: 60 deliveries out of order before, none after."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio.cluster

from adapter.delivery import pump as pump_module
from adapter.settings import Settings


def retries_of(client: Any) -> int:
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        return client.retry.get_retries()
    retry = client.connection_pool.connection_kwargs.get("retry")
    return 0 if retry is None else retry.get_retries()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1/0"])
async def test_the_stream_reader_never_retries_by_itself(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({"ADAPTER_REDIS_URL": url, "ADAPTER_RQ_REDIS_URL": "redis://127.0.0.1:1/1"},
                                 dotenv=None)
    seen: dict[str, Any] = {}

    async def capture(self: pump_module.Pump, stop: asyncio.Event, *, burst: bool = False) -> None:
        seen["reader"], seen["client"] = self.reader, self.redis

    monkeypatch.setattr(pump_module.Pump, "run", capture)
    await pump_module.run_pump(settings, asyncio.Event())

    assert seen["reader"] is not seen["client"]
    assert retries_of(seen["reader"]) == 0
