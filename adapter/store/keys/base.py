"""What every area's keys are built on: the prefix, the layout (one Redis or the cluster's partitions), the hash
tags of the partitions and of the fixed slots, and the key builders `_k` (no slot) and `_t` (in a tag's slot)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING, Self

from redis.crc import key_slot

if TYPE_CHECKING:
    from adapter.settings import Settings

SLOTS = 16384


def partition_of(sn: str, partitions: int) -> int:
    """The partition of a device: the first 8 hex digits of sha1(sn) mod `partitions` (fanout.lua computes the
    same for the single-Redis delivery streams)."""
    return int(hashlib.sha1(sn.encode()).hexdigest()[:8], 16) % partitions


@lru_cache(maxsize=8)
def partition_tags(partitions: int) -> tuple[str, ...]:
    """Partition n's hash tag: `p<n>`, or the first `p<n>.<k>` whose slot falls in the middle half of the n-th
    of `partitions` equal slot ranges. A cluster whose primaries own equal slot ranges (what `redis-cli --cluster
    create` makes) then holds exactly P/M partitions on each of M primaries whenever M divides P; naive `{p<n>}`
    tags land 12/16/20 of 48 over 3 primaries (docs/cluster/plan.md §0)."""
    out = []
    for n in range(partitions):
        lo, hi = n * SLOTS / partitions, (n + 1) * SLOTS / partitions
        quarter = (hi - lo) / 4
        k = 0
        while True:
            tag = f"p{n}" if k == 0 else f"p{n}.{k}"
            if lo + quarter <= key_slot(tag.encode()) < hi - quarter or hi - lo < 4:
                break
            k += 1
        out.append("{" + tag + "}")
    return tuple(out)


class KeyBase:
    def __init__(self, prefix: str, cluster_partitions: int = 0, stream_partitions: int = 4) -> None:
        self.prefix = prefix
        self.cluster = cluster_partitions > 0
        self.cluster_partitions = cluster_partitions
        # the delivery streams: ADAPTER_DELIVERY_PARTITIONS on one Redis, one per partition on the cluster
        self.stream_partitions = cluster_partitions if self.cluster else stream_partitions
        self._tags = partition_tags(cluster_partitions) if self.cluster else ()
        self.auth_tag = "{auth}" if self.cluster else ""
        self.targets_tag = "{tgt}" if self.cluster else ""
        self.meta_tag = "{meta}" if self.cluster else ""
        self.rollouts_tag = "{ro}" if self.cluster else ""

    @classmethod
    def of(cls, settings: Settings) -> Self:
        """The keys of a running service: its prefix and, on Redis Cluster, its partitions."""
        return cls(settings.key_prefix, settings.cluster_partitions if settings.redis_cluster else 0,
                   settings.delivery_partitions)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _t(self, tag: str, *parts: str) -> str:
        """A key in the slot of `tag` (no tag on one Redis: the key is what `_k` builds)."""
        return ":".join((self.prefix, tag, *parts)) if tag else ":".join((self.prefix, *parts))

    # --- slots (cluster layout) ----------------------------------------------------------------------------
    def shard(self, sn: str) -> int:
        """A device's index shard: its partition on the cluster, 0 on one Redis (one shard, no tags)."""
        return partition_of(sn, self.cluster_partitions) if self.cluster else 0

    def shard_tag(self, p: int) -> str:
        """The hash tag of shard (= partition) `p` ("" on one Redis)."""
        return self._tags[p] if self.cluster else ""

    def stream_partition(self, sn: str) -> int:
        """The delivery stream of a device (an ordering key): sha1 mod the stream partitions, on either layout; on
        the cluster it is the device's shard, so `delivery_stream(p)` has the device's tag."""
        return partition_of(sn, self.stream_partitions)

    def tag(self, sn: str) -> str:
        """The hash tag of a device's slot ("" on one Redis)."""
        return self._tags[partition_of(sn, self.cluster_partitions)] if self.cluster else ""

    def shards(self) -> range:
        """The index shards a global index is split into: every partition on the cluster, one on one Redis."""
        return range(self.cluster_partitions) if self.cluster else range(1)

    def meta(self) -> str:
        """Hash: the key layout a store was written with (`partitions`, `layout`); a service refuses to start on
        a store of another layout."""
        return self._t(self.meta_tag, "meta")
