"""The delivery targets (callbacks and routes) and the delivery engine: their keys."""

from __future__ import annotations

from adapter.store.keys.base import KeyBase


class DeliveryKeys(KeyBase):
    # status-change callbacks and message routes: the delivery targets (docs/design.md §6). All in `{tgt}` on
    # the cluster (one slot: a change is one MULTI), except the per-partition replicas the device scripts read.
    def target_seq(self, kind: str) -> str:
        """Counter of the ids of `kind` ("callback" or "route")."""
        return self._t(self.targets_tag, "seq", kind)

    def target(self, kind: str, target_id: int | str) -> str:
        """Hash of one target: url, enabled, secret, createTime, updateTime, succCount, failedCount (on the
        cluster the engine counts in `delivery_counts`; these two stay 0), and type (callbacks) or name, topic
        (routes)."""
        return self._t(self.targets_tag, kind, str(target_id))

    def targets(self, kind: str) -> str:
        """Sorted set of the ids of `kind`, scored by id."""
        return self._t(self.targets_tag, f"{kind}s")

    def routes_enabled(self) -> str:
        """Hash id -> topic filter of the enabled message routes (what every API process's table loads)."""
        return self._t(self.targets_tag, "routes", "enabled")

    def routes_version(self) -> str:
        """Counter bumped by every change of any route."""
        return self._t(self.targets_tag, "routes", "version")

    def routes_channel(self) -> str:
        """Pub/sub channel every change of any route publishes on (the message is the route id)."""
        return self._t(self.targets_tag, "routes", "changed")

    def callbacks_enabled_of(self, cb_type: str) -> str:
        """Set of the enabled callback ids of one type (device | peripheral), the authoritative one (written in
        the callback's MULTI); the ingest fans out to `callbacks_enabled_in`."""
        return self._t(self.targets_tag, "callbacks", "enabled", cb_type)

    def callbacks_enabled_in(self, cb_type: str, p: int) -> str:
        """The enabled set that the device scripts of shard `p` read: on the cluster a replica in the shard's slot
        (targets/callbacks.py writes it after the MULTI, `replicas.repair` re-syncs it); on one Redis the
        authoritative set itself (no replica)."""
        if not self.cluster:
            return self.callbacks_enabled_of(cb_type)
        return self._t(self.shard_tag(p), "callbacks", "enabled", cb_type)

    def callback_stats(self, cb_type: str) -> str:
        """Hash succ, failed: deliveries of one callback type (on the cluster: summed over `callback_stats_in`)."""
        return self._k("callbacks", "stats", cb_type)

    def callback_stats_in(self, cb_type: str, p: int) -> str:
        """The stats hash outcome.lua counts partition `p`'s deliveries in: `callback_stats` on one Redis."""
        if not self.cluster:
            return self.callback_stats(cb_type)
        return self._t(self.shard_tag(p), "callbacks", "stats", cb_type)

    # the delivery engine. Every key an outcome, hold, move-due or replay script touches is in the slot of the
    # delivery stream partition `p` (docs/delivery.md "On Redis Cluster"); on one Redis the per-target keys are
    # one "partition" (their names carry no `p`: `p` is ignored), as they always were.
    def delivery_stream(self, partition: int) -> str:
        """Stream of deliveries waiting to be sent, one per partition (a device's items share one); on the
        cluster in the slot of shard `partition`."""
        return self._t(self.shard_tag(partition), "dq", str(partition))

    def delivery_stream_prefix(self) -> str:
        """One Redis only: what `delivery_stream(p)` starts with (scripts that pick the partition themselves)."""
        return self._k("dq", "")

    def delivery_retry(self, p: int = 0) -> str:
        """Sorted set of deliveries waiting for their next attempt, scored by due time (ms): one on one Redis,
        one per partition on the cluster."""
        return self._t(self.shard_tag(p), "dq", "retry")

    def delivery_hold(self, target: str, key: str) -> str:
        """List of deliveries held behind one that is being retried (same target, same device): in the slot of
        the device's partition."""
        return self._t(self.tag(key), "dq", "hold", target, key)

    def delivery_hold_prefix(self, p: int) -> str:
        """What the hold lists of partition `p` start with: `{prefix}{target}:{key}`."""
        return self._t(self.shard_tag(p), "dq", "hold", "")

    def delivery_holds(self, partition: int) -> str:
        """Set of the hold lists of one partition (a pump taking the partition over loads them)."""
        return self._t(self.shard_tag(partition), "dq", "holds", str(partition))

    def delivery_held(self, target: str, p: int = 0) -> str:
        """Sorted set of one target's non-empty hold lists (of partition `p` on the cluster), scored by the hold
        time (ms) of each list's oldest held delivery: what the target's held cap drops from first."""
        return self._t(self.shard_tag(p), "dq", "held", target)

    def delivery_state(self, target: str, p: int = 0) -> str:
        """Hash of the engine's state of one target (of partition `p` on the cluster): held (count), heldDropped,
        deadDropped, failures (consecutive), breaker ("open" or absent), openedAt (s), probeAt (ms); on the
        cluster also succCount, failedCount (`delivery_counts`)."""
        return self._t(self.shard_tag(p), "dq", "state", target)

    def delivery_counts(self, target: str, p: int = 0) -> str:
        """Hash whose succCount and failedCount outcome.lua bumps: the target's own hash on one Redis (only while
        it exists), the partition's `delivery_state` on the cluster."""
        if not self.cluster:
            kind, _, target_id = target.partition(":")
            return self.target(kind, target_id)
        return self.delivery_state(target, p)

    def delivery_lease(self, partition: int) -> str:
        return self._t(self.shard_tag(partition), "dq", "lease", str(partition))

    def delivery_pumps(self) -> str:
        """Sorted set of live delivery pumps, scored by their last heartbeat (ms)."""
        return self._t(self.meta_tag, "dq", "pumps")

    def attempts(self, target: str, p: int = 0) -> str:
        """List of the most recent attempts of one target (JSON), newest first, capped (per partition on the
        cluster: a read merges them)."""
        return self._t(self.shard_tag(p), "attempts", target)

    def dead(self, target: str, p: int = 0) -> str:
        """Hash of dead-lettered deliveries of one target (of partition `p` on the cluster): id -> JSON."""
        return self._t(self.shard_tag(p), "dead", target)

    def dead_index(self, target: str, p: int = 0) -> str:
        """Sorted set of one target's dead letters (of partition `p` on the cluster), scored by when they died
        (ms): pages, the count cap and the age cap read it."""
        return self._t(self.shard_tag(p), "dead-idx", target)
