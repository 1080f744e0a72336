"""adapter/migrate/mapping.py: every key builder has a rule, and every key lands where the target's own builder
spells it (a new key without a rule, or a rule that sends a key elsewhere, fails here)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from adapter.commands import ids as command_ids
from adapter.migrate.mapping import (
    BY_NAME,
    NOT_KEYS,
    RULES,
    Move,
    assign_ids,
    classify,
    day_counters,
    move_of,
    renumber_expiry,
    renumber_result,
    split_members,
    whole_target,
)
from adapter.store.keys import Keys

_NOT_BUILDERS = {"of", "shard", "shard_tag", "stream_partition", "tag", "shards"}
SN, NID = "SN7", "n1"
ID = "202612030000000012"

# builder -> its key in a store (p: the partition a sharded key is in); SPLIT builders' members belong to SN
Sample = Callable[[Keys, int], str]
SAMPLES: dict[str, Sample] = {
    "users": lambda k, p: k.users(), "user": lambda k, p: k.user("bob"), "token": lambda k, p: k.token("ab12"),
    "user_tokens": lambda k, p: k.user_tokens("bob"),
    "login_failures_pair": lambda k, p: k.login_failures_pair("bob", "::1"),
    "login_failures_ip": lambda k, p: k.login_failures_ip("10.0.0.1"),
    "authn_failures_sn": lambda k, p: k.authn_failures_sn(SN),
    "authn_failures_host": lambda k, p: k.authn_failures_host("10.0.0.9"),
    "metrics": lambda k, p: k.metrics(), "metrics_in": lambda k, p: k.metrics_in(p),
    "credential": lambda k, p: k.credential(SN), "credentials": lambda k, p: k.credentials(p),
    "authn_cache": lambda k, p: k.authn_cache(SN), "client": lambda k, p: k.client(SN),
    "presence_log": lambda k, p: k.presence_log(SN),
    "devices": lambda k, p: k.devices(p), "devices_online": lambda k, p: k.devices_online(p),
    "devices_offline": lambda k, p: k.devices_offline(p), "peripheral": lambda k, p: k.peripheral(SN, NID),
    "peripherals": lambda k, p: k.peripherals(p), "peripherals_online": lambda k, p: k.peripherals_online(p),
    "peripherals_offline": lambda k, p: k.peripherals_offline(p),
    "peripherals_of_gw": lambda k, p: k.peripherals_of_gw("GW:1", p),
    "page_anchors": lambda k, p: k.page_anchors("devices"), "peripherals_seen": lambda k, p: k.peripherals_seen(SN),
    "seen": lambda k, p: k.seen("msg:AB", SN), "target_seq": lambda k, p: k.target_seq("route"),
    "target": lambda k, p: k.target("callback", 3), "targets": lambda k, p: k.targets("route"),
    "routes_enabled": lambda k, p: k.routes_enabled(), "routes_version": lambda k, p: k.routes_version(),
    "callbacks_enabled_of": lambda k, p: k.callbacks_enabled_of("device"),
    "callbacks_enabled_in": lambda k, p: k.callbacks_enabled_in("device", p),
    "callback_stats": lambda k, p: k.callback_stats("peripheral"),
    "callback_stats_in": lambda k, p: k.callback_stats_in("peripheral", p),
    "delivery_stream": lambda k, p: k.delivery_stream(p), "delivery_retry": lambda k, p: k.delivery_retry(p),
    "delivery_hold": lambda k, p: k.delivery_hold("callback:3", SN),
    "delivery_holds": lambda k, p: k.delivery_holds(p), "delivery_held": lambda k, p: k.delivery_held("route:4", p),
    "delivery_state": lambda k, p: k.delivery_state("route:4", p),
    "delivery_counts": lambda k, p: k.delivery_counts("route:4", p),
    "delivery_lease": lambda k, p: k.delivery_lease(p), "delivery_pumps": lambda k, p: k.delivery_pumps(),
    "attempts": lambda k, p: k.attempts("route:4", p), "dead": lambda k, p: k.dead("callback:3", p),
    "dead_index": lambda k, p: k.dead_index("callback:3", p),
    "command_seq": lambda k, p: k.command_seq("20261203", p), "command": lambda k, p: k.command(ID, p),
    "command_response": lambda k, p: k.command_response(ID, p), "commands": lambda k, p: k.commands(p),
    "commands_from": lambda k, p: k.commands_from("web", p), "commands_of_sn": lambda k, p: k.commands_of_sn(SN),
    "commands_from_sn": lambda k, p: k.commands_from_sn("web", SN),
    "commands_active": lambda k, p: k.commands_active(SN), "commands_expiry": lambda k, p: k.commands_expiry(p),
    "commands_due": lambda k, p: k.commands_due(p), "device_tags": lambda k, p: k.device_tags(SN),
    "tagged": lambda k, p: k.tagged("blue", p), "rollout_seq": lambda k, p: k.rollout_seq(),
    "rollouts": lambda k, p: k.rollouts(), "rollouts_active": lambda k, p: k.rollouts_active(),
    "rollout": lambda k, p: k.rollout(7), "rollout_sns": lambda k, p: k.rollout_sns(7),
    "rollout_execs": lambda k, p: k.rollout_execs(7), "rollout_results": lambda k, p: k.rollout_results(7),
    "rollout_inflight": lambda k, p: k.rollout_inflight(7), "rollout_driver": lambda k, p: k.rollout_driver(7),
    "stats_series": lambda k, p: k.stats_series("devices.online"),
    "target_series": lambda k, p: k.target_series("route", 3, "delivered"),
    "stats_lease": lambda k, p: k.stats_lease(), "job_chain": lambda k, p: k.job_chain("reconcile"),
    "job_progress": lambda k, p: k.job_progress("iot-commands-1"),
    "retention_cursor": lambda k, p: k.retention_cursor("devices"), "meta": lambda k, p: k.meta(),
    "migration": lambda k, p: k.migration(), "migration_ids": lambda k, p: k.migration_ids(),
}
# builders that spell a global key on one Redis and a per-partition one on a cluster (finish.py rebuilds them)
REBUILT = {"callbacks_enabled_in", "delivery_counts"}
LAYOUTS = [(Keys("iot"), Keys("iot", 48)), (Keys("iot", 48), Keys("iot")), (Keys("iot", 48), Keys("iot", 12)),
           (Keys("iot", 5), Keys("iot", 48))]


def builders() -> set[str]:
    k = Keys("iot")
    return {n for n in dir(k) if not n.startswith("_") and callable(getattr(k, n)) and n not in _NOT_BUILDERS}


def test_every_key_builder_has_a_rule_and_a_sample() -> None:
    covered = {r.name for r in RULES} | {a for r in RULES for a in r.also}
    assert not builders() - covered - NOT_KEYS, "a key builder without a migration rule (adapter/migrate/mapping.py)"
    assert not (builders() - NOT_KEYS) - set(SAMPLES)
    assert not NOT_KEYS - builders()  # a builder gone: its exemption goes too


@pytest.mark.parametrize(("source", "target"), LAYOUTS, ids=["1-48", "48-1", "48-12", "5-48"])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_key_is_recognised_and_lands_where_the_target_spells_it(source: Keys, target: Keys, name: str) -> None:
    build = SAMPLES[name]
    p = source.shard(SN)
    key = build(source, p)
    found = classify(key, "iot")
    assert found is not None, key
    assert name == found.rule.name or name in found.rule.also, (key, found.rule.name)
    move = move_of(found, target)
    if name in REBUILT:  # a one-Redis key that the cluster keeps per partition: adapter/migrate/finish.py writes it
        assert move is not Move.WHOLE or not source.cluster
        return
    if move is Move.WHOLE:
        if name == "seen":  # a one-Redis dedup mark only moves into one Redis (it does not say whose it is)
            assert not target.cluster
        assert whole_target(found, target) == build(target, target.shard(SN))
    elif move is Move.SPLIT:
        member = f"{SN}/{NID}" if found.rule.member == "sn/" else SN
        assert split_members(found, target, [member]) == {build(target, target.shard(SN)): [member]}
    assert classify(key.replace("iot:", "iox:", 1), "iot") is None


def test_a_device_whose_sn_holds_a_colon() -> None:
    """A client id may hold ':'; a peripheral's nId never does (protocol/uplink.py): its key splits at the last."""
    source, target = Keys("iot"), Keys("iot", 48)
    found = classify(source.peripheral("a:b:c", "n1"), "iot")
    assert found is not None and whole_target(found, target) == target.peripheral("a:b:c", "n1")


def test_what_is_not_copied() -> None:
    """Leases, caches, hints and RQ's chains are dropped; the engine's backlog is refused; replicas are rebuilt."""
    cluster, one = Keys("iot", 48), Keys("iot")
    for name in ("delivery_lease", "stats_lease", "rollout_driver", "authn_cache", "page_anchors", "job_chain",
                 "retention_cursor", "migration", "meta", "delivery_pumps", "command_seq"):
        assert BY_NAME[name].move is Move.DROP, name
    for name in ("delivery_stream", "delivery_retry", "delivery_hold", "delivery_holds"):
        assert BY_NAME[name].move is Move.BACKLOG, name
    replica = classify(cluster.callbacks_enabled_in("device", 3), "iot")
    assert replica is not None and replica.replica and move_of(replica, one) is Move.DROP
    authoritative = classify(cluster.callbacks_enabled_of("device"), "iot")
    assert authoritative is not None and move_of(authoritative, one) is Move.WHOLE
    seen = classify(one.seen("msg:AB"), "iot")
    assert seen is not None and move_of(seen, cluster) is Move.DROP and move_of(seen, one) is Move.WHOLE


def test_one_redis_keeps_command_ids() -> None:
    pairs = [(int(ID), SN), (int(ID) + 1, "SN8")]
    assert assign_ids(pairs, Keys("iot")) == {int(ID): int(ID), int(ID) + 1: int(ID) + 1}
    assert day_counters([int(ID), int(ID) + 1], Keys("iot")) == {"iot:cmd-seq:20261203": 13}


def test_a_cluster_gives_each_command_an_id_of_its_devices_partition_in_creation_order() -> None:
    target = Keys("iot", 48)
    day1, day2 = 20261202, 20261203
    pairs = [(day2 * 10**10 + n, f"SN{n % 7}") for n in range(1, 200)] + [(day1 * 10**10 + 5, "SN1")]
    new = assign_ids(reversed(pairs), target)
    assert len(set(new.values())) == len(pairs)
    for old, sn in pairs:
        assert command_ids.partition_of(new[old], 48) == target.shard(sn)
        assert new[old] // 10**10 == old // 10**10  # same day
    for sn in {sn for _, sn in pairs}:  # one device's commands keep their order
        mine = [new[old] for old, s in sorted(pairs) if s == sn]
        assert mine == sorted(mine)
    counters = day_counters(new.values(), target)
    q = target.shard("SN1")
    assert counters[target.command_seq("20261202", q)] == 1
    assert counters[target.command_seq("20261203", q)] == sum(1 for n in range(1, 200) if f"SN{n % 7}" == "SN1" or
                                                              target.shard(f"SN{n % 7}") == q)


def test_renumbered_references() -> None:
    ids = {int(ID): 202612030000000101}
    assert renumber_expiry(f'["{ID}","web","a\\/b"]', ids) == ('["202612030000000101","web","a\\/b"]',
                                                               202612030000000101)
    assert renumber_expiry('["202612030000000099","web","x"]', ids) is None
    assert renumber_result(f"{ID} succeeded 1700", ids) == "202612030000000101 succeeded 1700"
    assert renumber_result("pending", ids) == "pending"


def test_samples_name_real_builders() -> None:
    for name in SAMPLES:
        assert inspect.ismethod(getattr(Keys("iot"), name)), name
