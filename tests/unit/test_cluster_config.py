"""Redis Cluster configuration: `redis+cluster://` URLs, RQ's own Redis, and how a packed command is routed."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster

from adapter.settings import ConfigError, Settings, cluster_seeds
from adapter.store import resp
from adapter.store.cluster_batcher import first_key, slot_of
from adapter.store.connections import async_redis, plain_url
from adapter.store.scripts import Script

CLUSTER = "redis+cluster://10.0.0.5:7001/0"
RQ = "redis://10.0.0.9:6379/2"


def test_cluster_urls() -> None:
    assert Settings(redis_url=CLUSTER).redis_cluster
    assert Settings(redis_url="rediss+cluster://:pw@h:7001").redis_cluster
    assert not Settings(redis_url="redis://h:6379/0").redis_cluster
    assert plain_url(CLUSTER) == "redis://10.0.0.5:7001/0"
    assert plain_url("rediss+cluster://u:pw@h:7001") == "rediss://u:pw@h:7001"
    assert plain_url("redis://h:6379/3") == "redis://h:6379/3"


def test_a_cluster_url_names_one_or_more_seeds() -> None:
    assert cluster_seeds("redis+cluster://u:pw@h1:7001,h2:7002, h3/0?ssl_cert_reqs=none") == (
        "redis://u:pw@h1:7001/0?ssl_cert_reqs=none", [("h1", 7001), ("h2", 7002), ("h3", 6379)])
    assert cluster_seeds("rediss+cluster://[::1]:7001,10.0.0.2:7002") == (
        "rediss://[::1]:7001", [("::1", 7001), ("10.0.0.2", 7002)])
    assert plain_url("redis+cluster://h1:7001,h2:7002/0") == "redis://h1:7001/0"
    for bad, says in [("redis+cluster://h1:7001,h2:x", "'h2:x' is not a host:port seed"),
                      ("redis+cluster://h1:7001,", "'' is not a host:port seed"),
                      ("redis+cluster://h1:70000", "'h1:70000' is not a host:port seed"),
                      ("redis+cluster://u:secret@h1:7001/2", "database 0 only")]:
        with pytest.raises(ConfigError, match=says) as caught:
            Settings.from_env({"ADAPTER_REDIS_URL": bad, "ADAPTER_RQ_REDIS_URL": RQ}, dotenv=None)
        assert "secret" not in str(caught.value) and "\n" not in str(caught.value)


def test_every_seed_is_a_startup_node() -> None:
    settings = Settings(redis_url="redis+cluster://10.0.0.5:7001,10.0.0.6:7002", rq_redis_url=RQ)
    client = async_redis(settings)  # built, not connected
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    assert set(client.nodes_manager.startup_nodes) == {"10.0.0.5:7001", "10.0.0.6:7002"}


def test_a_cluster_url_gives_a_cluster_client() -> None:
    settings = Settings(redis_url=CLUSTER, rq_redis_url=RQ)
    client = async_redis(settings, max_connections=7)  # built, not connected
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    assert client.get_default_node() is None or client.get_default_node().port == 7001
    assert isinstance(async_redis(Settings(redis_url="redis://h:6379/0")), redis.asyncio.Redis)


def test_rq_redis_url_is_required_on_a_cluster() -> None:
    with pytest.raises(ConfigError, match="ADAPTER_RQ_REDIS_URL is required"):
        Settings.from_env({"ADAPTER_REDIS_URL": CLUSTER}, dotenv=None)
    s = Settings.from_env({"ADAPTER_REDIS_URL": CLUSTER, "ADAPTER_RQ_REDIS_URL": RQ}, dotenv=None)
    assert s.rq_url == RQ


def test_rq_redis_url_defaults_to_the_one_redis_and_is_never_a_cluster() -> None:
    assert Settings.from_env({"ADAPTER_REDIS_URL": "redis://h:1/4"}, dotenv=None).rq_url == "redis://h:1/4"
    with pytest.raises(ConfigError, match="ADAPTER_RQ_REDIS_URL must be a redis/rediss/unix URL"):
        Settings.from_env({"ADAPTER_REDIS_URL": CLUSTER, "ADAPTER_RQ_REDIS_URL": CLUSTER}, dotenv=None)


def test_the_rq_url_password_is_not_shown() -> None:
    s = Settings(redis_url=CLUSTER, rq_redis_url="redis://u:hunter2@h:6379/0")
    assert "hunter2" not in repr(s) and "redis://u:***@h:6379/0" in repr(s)


def test_a_packed_command_is_routed_by_its_first_key() -> None:
    script = Script("return 1")
    call = resp.PreparedCall(script, ["iot:{p3}:devices"], 1)
    assert first_key(call.pack(["iot:{p3}:client:a"], ["x"])) == b"iot:{p3}:devices"
    assert first_key(resp.pack("EVALSHA", script.sha, 0, "arg")) is None
    assert first_key(resp.pack("XADD", "iot:{p1}:dq", "*", "t", "1")) == b"iot:{p1}:dq"
    assert first_key(resp.pack("PING")) is None
    assert slot_of(resp.pack("HSET", "iot:{p3}:client:a", "f", "v")) == redis.crc.key_slot(b"{p3}")
