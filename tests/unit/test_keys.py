"""Every Redis key, pinned: a changed name is a data migration and must be deliberate."""

from collections import Counter

from redis.crc import key_slot

from adapter.store.keys import Keys, partition_of, partition_tags

_NOT_KEYS = {"of", "shard", "shard_tag", "stream_partition", "tag", "shards"}


def test_every_key_is_pinned() -> None:
    k = Keys("iot")
    assert k.users() == "iot:users"
    assert k.user("bob") == "iot:user:bob"
    assert k.token("ab12") == "iot:token:ab12"
    assert k.user_tokens("bob") == "iot:user-tokens:bob"
    assert k.login_failures_pair("bob", "10.0.0.1") == "iot:login-fail:pair:bob:10.0.0.1"
    assert k.login_failures_ip("10.0.0.1") == "iot:login-fail:ip:10.0.0.1"
    assert k.metrics() == "iot:metrics"
    assert k.queue("default") == "iot-default"
    assert k.client("SN1") == "iot:client:SN1"
    assert k.presence_log("SN1") == "iot:presence-log:SN1"
    assert k.devices(0) == k.devices() == "iot:devices"
    assert k.devices_online(0) == "iot:devices:online"
    assert k.devices_offline(0) == "iot:devices:offline"
    assert k.peripheral("GW1", "P1") == "iot:peri:GW1:P1"
    assert k.peripherals(0) == "iot:peris"
    assert k.peripherals_online(0) == "iot:peris:online"
    assert k.peripherals_offline(0) == "iot:peris:offline"
    assert k.peripherals_of_gw("G", 0) == "iot:peris:gw:G"
    assert k.peripheral_prefix("GW1") + "GW1:P1" == k.peripheral("GW1", "P1")
    assert k.peripherals_of_gw_prefix(0) + "G" == k.peripherals_of_gw("G", 0)
    assert k.peripherals_seen("GW1") == "iot:peris:seen:GW1"
    assert k.peripherals_seen_prefix("GW1") + "GW1" == k.peripherals_seen("GW1")
    assert k.target_seq("callback") == "iot:seq:callback"
    assert k.target("callback", 3) == "iot:callback:3"
    assert k.target("route", "7") == "iot:route:7"
    assert k.targets("callback") == "iot:callbacks"
    assert k.targets("route") == "iot:routes"
    assert k.routes_enabled() == "iot:routes:enabled"
    assert k.device_tags("SN1") == "iot:tags:sn:SN1"
    assert k.tagged("blue", 0) == "iot:tagged:blue"
    assert k.rollout_seq() == "iot:ro-seq"
    assert k.rollouts() == "iot:rollouts"
    assert k.rollouts_active() == "iot:rollouts:active"
    assert k.rollout(7) == "iot:ro:7"
    assert k.rollout_sns(7) == "iot:ro:7:sns"
    assert k.rollout_execs(7) == "iot:ro:7:execs"
    assert k.rollout_results(7) == "iot:ro:7:results"
    assert k.rollout_inflight(7) == "iot:ro:7:inflight"
    assert k.rollout_driver(7) == "iot:ro:7:driver"
    assert k.routes_version() == "iot:routes:version"
    assert k.routes_channel() == "iot:routes:changed"
    assert k.callbacks_enabled_of("device") == "iot:callbacks:enabled:device"
    assert k.callbacks_enabled_in("device", 0) == k.callbacks_enabled_of("device")  # no replica on one Redis
    assert k.metrics_in(0) == k.metrics()
    assert k.callback_stats("peripheral") == "iot:callbacks:stats:peripheral"
    assert k.delivery_stream(2) == "iot:dq:2"
    assert k.delivery_stream_prefix() + "2" == k.delivery_stream(2)
    assert k.credential("SN1") == "iot:cred:SN1"
    assert k.job_chain("reconcile") == "iot:jobs:chain:reconcile"
    assert k.job_progress("iot-commands-1") == "iot:jobs:progress:iot-commands-1"
    assert k.retention_cursor("devices") == "iot:jobs:retention:devices"
    assert k.credentials(0) == "iot:creds"
    assert k.authn_cache("SN1") == "iot:authn-ok:SN1"
    assert k.authn_failures_sn("SN1") == "iot:authn-fail:sn:SN1"
    assert k.authn_failures_host("10.0.0.9") == "iot:authn-fail:host:10.0.0.9"
    assert k.delivery_retry() == "iot:dq:retry"
    assert k.delivery_hold("callback:1", "SN1") == "iot:dq:hold:callback:1:SN1"
    assert k.delivery_lease(0) == "iot:dq:lease:0"
    assert k.delivery_holds(3) == "iot:dq:holds:3"
    assert k.delivery_pumps() == "iot:dq:pumps"
    assert k.attempts("route:4") == "iot:attempts:route:4"
    assert k.dead("route:4") == "iot:dead:route:4"
    assert k.dead_index("route:4") == "iot:dead-idx:route:4"
    assert k.delivery_held("route:4") == "iot:dq:held:route:4"
    assert k.delivery_state("route:4") == "iot:dq:state:route:4"
    assert k.seen("msg:AB", "SN1") == k.seen("msg:AB") == "iot:seen:msg:AB"
    # remote control commands
    assert k.command_seq("20181126", 0) == "iot:cmd-seq:20181126"
    assert k.command("201811260000000001", 0) == "iot:cmd:201811260000000001"
    assert k.command_prefix(0) + "7" == k.command("7", 0)
    assert k.command_response("201811260000000001", 0) == "iot:cmd-resp:201811260000000001"
    assert k.command_response_prefix(0) + "7" == k.command_response("7", 0)
    assert k.commands(0) == "iot:cmds"
    assert k.commands_from("iot_web_console", 0) == "iot:cmds:from:iot_web_console"
    assert k.commands_from_prefix(0) + "web" == k.commands_from("web", 0)
    assert k.commands_of_sn("SN1") == "iot:cmds:sn:SN1"
    assert k.commands_of_sn_prefix(0) + "SN1" == k.commands_of_sn("SN1")
    assert k.commands_from_sn("web", "SN1") == "iot:cmds:from-sn:web:SN1"
    assert k.commands_from_sn_prefix(0) + "web:SN1" == k.commands_from_sn("web", "SN1")
    assert k.commands_active("SN1") == "iot:cmds:active:SN1"
    assert k.commands_active_prefix(0) + "SN1" == k.commands_active("SN1")
    assert k.commands_expiry(0) == "iot:cmds:expiry"
    assert k.commands_due(0) == "iot:cmds:due"
    assert k.metrics_in(0) == k.metrics() == "iot:metrics"
    assert k.seen("cmd-resp:M1", "SN1") == "iot:seen:cmd-resp:M1"
    # per-minute series
    assert k.stats_series("devices.online") == "iot:stats:devices.online"
    assert k.target_series("route", 3, "delivered") == "iot:stats:route:3:delivered"
    assert k.stats_lease() == "iot:stats:lease"
    # adapter store migrate
    assert k.migration() == "iot:migrate"
    assert k.migration_ids() == "iot:migrate:ids"
    assert Keys("iot", 48).migration() == "iot:{meta}:migrate"


def test_prefix_applies_everywhere() -> None:
    k = Keys("acme")
    names = [getattr(k, n) for n in dir(k)
             if not n.startswith("_") and n not in _NOT_KEYS and callable(getattr(k, n))]
    for build in names:
        argc = build.__code__.co_argcount - 1
        key = build(*(["x"] * argc))
        assert key.startswith("acme:") or key.startswith("acme-"), key


def test_one_redis_has_no_tags() -> None:
    k = Keys("iot")
    assert not k.cluster and k.tag("SN1") == "" and k.shard("SN1") == 0
    assert k.stream_partition("SN1") == partition_of("SN1", 4)
    assert list(k.shards()) == [0]
    assert k.meta() == "iot:meta"


def test_partition_is_the_fanout_hash() -> None:
    import hashlib

    for sn in ("SN1", "gw-7", "\u00e9t\u00e9"):
        assert partition_of(sn, 4) == int(hashlib.sha1(sn.encode()).hexdigest()[:8], 16) % 4


def test_cluster_tags_spread_evenly_over_primaries() -> None:
    """P = 48 tags over 1, 2, 3, 4, 6, 8 primaries with equal slot ranges: exactly P/M partitions each (naive
    `{p<n>}` tags land 12/16/20 over 3)."""
    tags = partition_tags(48)
    assert len(set(tags)) == 48 and all(t.startswith("{p") and t.endswith("}") for t in tags)
    for primaries in (1, 2, 3, 4, 6, 8):
        owner = Counter(key_slot(t.encode()) * primaries // 16384 for t in tags)
        assert sorted(owner.values()) == [48 // primaries] * primaries, (primaries, owner)


def test_cluster_keys_of_one_device_share_a_slot() -> None:
    k = Keys("iot", 48)
    assert k.cluster and k.tag("SN1") == partition_tags(48)[partition_of("SN1", 48)]
    assert k.meta() == "iot:{meta}:meta"
    assert list(k.shards()) == list(range(48))
    assert k.shard_tag(k.shard("SN1")) == k.tag("SN1")
    assert k.stream_partition("SN1") == k.shard("SN1")


def test_cluster_commands_live_in_their_devices_slot() -> None:
    """A command for sn lives with its device: the per-partition keys of shard(sn) and the per-sn keys share
    the device's slot, and the prefixes the script builds from are of that slot too."""
    k = Keys("iot", 48)
    p = k.shard("SN1")
    slot = key_slot(k.tag("SN1").encode())
    same = [k.command_seq("20181126", p), k.command("7", p), k.command_response("7", p), k.commands(p),
            k.commands_from("web", p), k.commands_of_sn("SN1"), k.commands_from_sn("web", "SN1"),
            k.commands_active("SN1"), k.commands_expiry(p), k.commands_due(p), k.metrics_in(p),
            k.seen("cmd-resp:M1", "SN1"), k.command_prefix(p) + "7", k.commands_active_prefix(p) + "SN1"]
    assert {key_slot(x.encode()) for x in same} == {slot}
    assert k.commands_active_prefix(p) + "SN1" == k.commands_active("SN1")
    assert k.commands_of_sn_prefix(p) + "SN1" == k.commands_of_sn("SN1")
    assert k.commands_from_sn_prefix(p) + "web:SN1" == k.commands_from_sn("web", "SN1")
    assert k.commands(p) == f"iot:{k.tag('SN1')}:cmds" and k.metrics_in(p) != k.metrics()


def test_cluster_series_live_with_what_they_describe() -> None:
    """A target's series share its slot (`{tgt}`: the delete's MULTI removes them); fleet series and the sampler's
    lease are in `{meta}`."""
    k = Keys("iot", 48)
    assert key_slot(k.target_series("route", 3, "failed").encode()) == key_slot(k.target("route", 3).encode())
    assert k.target_series("route", 3, "failed") == "iot:{tgt}:stats:route:3:failed"
    assert k.stats_series("ingest.events") == "iot:{meta}:stats:ingest.events"
    assert key_slot(k.stats_lease().encode()) == key_slot(k.meta().encode())


def test_cluster_tags_share_the_device_slot_and_rollouts_one_slot() -> None:
    k = Keys("iot", 48)
    p = k.shard("SN1")
    assert key_slot(k.device_tags("SN1").encode()) == key_slot(k.tagged("blue", p).encode()) \
        == key_slot(k.client("SN1").encode())
    slots = {key_slot(key.encode()) for key in (k.rollout_seq(), k.rollouts(), k.rollouts_active(), k.rollout(3),
                                                k.rollout_sns(3), k.rollout_execs(3), k.rollout_results(3),
                                                k.rollout_inflight(3), k.rollout_driver(3))}
    assert len(slots) == 1 and k.rollout(3) == "iot:{ro}:ro:3"
