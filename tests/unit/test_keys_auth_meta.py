"""The auth and meta keys on Redis Cluster: each family in one fixed slot, so that users.py's MULTIs and the
metrics/job keys never cross slots; on one Redis they are exactly the pinned keys (test_keys.py)."""

from redis.crc import key_slot

from adapter.store.keys import Keys


def auth_keys(k: Keys) -> list[str]:
    return [k.users(), k.user("bob"), k.user("admin"), k.token("ab12"), k.user_tokens("bob"),
            k.login_failures_pair("bob", "10.0.0.1"), k.login_failures_ip("10.0.0.1"),
            k.authn_failures_sn("SN1"), k.authn_failures_host("10.0.0.9")]  # device authn: one throttle call


def meta_keys(k: Keys) -> list[str]:
    return [k.meta(), k.metrics(), k.job_chain("reconcile"), k.job_progress("iot-commands-1"),
            k.retention_cursor("devices"), k.delivery_pumps()]


def test_cluster_auth_keys_share_the_auth_slot() -> None:
    k = Keys("iot", 48)
    assert {key_slot(key.encode()) for key in auth_keys(k)} == {key_slot(b"{auth}")}
    assert k.users() == "iot:{auth}:users"
    assert k.user("bob") == "iot:{auth}:user:bob"
    assert k.token("ab12") == "iot:{auth}:token:ab12"
    assert k.user_tokens("bob") == "iot:{auth}:user-tokens:bob"
    assert k.login_failures_pair("bob", "10.0.0.1") == "iot:{auth}:login-fail:pair:bob:10.0.0.1"
    assert k.login_failures_ip("10.0.0.1") == "iot:{auth}:login-fail:ip:10.0.0.1"
    assert k.authn_failures_sn("SN1") == "iot:{auth}:authn-fail:sn:SN1"  # one device check counts both
    assert k.authn_failures_host("10.0.0.9") == "iot:{auth}:authn-fail:host:10.0.0.9"


def test_cluster_meta_keys_share_the_meta_slot() -> None:
    k = Keys("iot", 48)
    assert {key_slot(key.encode()) for key in meta_keys(k)} == {key_slot(b"{meta}")}
    assert k.metrics() == "iot:{meta}:metrics"
    assert k.job_chain("reconcile") == "iot:{meta}:jobs:chain:reconcile"
    assert k.job_progress("j1") == "iot:{meta}:jobs:progress:j1"
    assert k.retention_cursor("devices") == "iot:{meta}:jobs:retention:devices"
    assert k.delivery_pumps() == "iot:{meta}:dq:pumps"


def test_script_metrics_live_in_the_shard_slot() -> None:
    k = Keys("iot", 48)
    assert k.metrics_in(k.shard("SN1")) == f"iot:{k.tag('SN1')}:metrics"
    assert key_slot(k.metrics_in(k.shard("SN1")).encode()) == key_slot(k.tag("SN1").encode())
    assert len({k.metrics_in(p) for p in k.shards()}) == 48
    one = Keys("iot")
    assert [one.metrics_in(p) for p in one.shards()] == [one.metrics()] == ["iot:metrics"]


def test_one_redis_auth_and_meta_keys_are_untagged() -> None:
    k = Keys("iot")
    assert not any("{" in key for key in auth_keys(k) + meta_keys(k))
