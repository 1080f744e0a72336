"""Every Redis key the service writes, built under one prefix. No other module spells a key.

RQ keeps its own `rq:*` keys; the queue names it is given come from here too.

Two layouts (docs/cluster.md). On one Redis (`cluster_partitions=0`, the default) keys are exactly what they always
were: `iot:client:<sn>`, one `iot:devices` index. On Redis Cluster every key carries a hash tag so that whatever
one script touches lives in one slot: a device's keys, its index shards, its delivery stream and its commands
carry the tag of its partition (`partition_of(sn)`, P = `cluster_partitions`), written `iot:{p7}:client:<sn>`;
low-rate global data lives in one fixed slot each (`{auth}`, `{tgt}`, `{meta}`).

The keys are built by area, one module each (`access`, `devices`, `delivery`, `commands`, `rollouts`, `ops`) on
`base.KeyBase`; `Keys` is all of them, and the one way any other module gets a key.
"""

from __future__ import annotations

from adapter.store.keys.access import AccessKeys
from adapter.store.keys.base import SLOTS, KeyBase, partition_of, partition_tags
from adapter.store.keys.commands import CommandKeys
from adapter.store.keys.delivery import DeliveryKeys
from adapter.store.keys.devices import DeviceKeys
from adapter.store.keys.ops import OpsKeys
from adapter.store.keys.rollouts import RolloutKeys

__all__ = ["SLOTS", "KeyBase", "Keys", "partition_of", "partition_tags"]


class Keys(AccessKeys, DeviceKeys, DeliveryKeys, CommandKeys, RolloutKeys, OpsKeys):
    """Every Redis key the service writes."""
