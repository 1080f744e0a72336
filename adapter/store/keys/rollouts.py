"""Device tags and rollouts: their keys."""

from __future__ import annotations

from adapter.store.keys.base import KeyBase


class RolloutKeys(KeyBase):
    # --- device tags and rollouts (issue 24, docs/rollouts.md) -------------------------------------------------
    # A device's tags and the tag's index shard it is in share the device's slot (one MULTI per device). Every
    # key of every rollout lives in `{ro}` on the cluster: a tick of a rollout's driver is one script call.
    def device_tags(self, sn: str) -> str:
        """Set of one device's tags (in `sn`'s slot)."""
        return self._t(self.tag(sn), "tags", "sn", sn)

    def tagged(self, tag: str, p: int = 0) -> str:
        """Sorted set of the sns of shard `p` that carry `tag` (scores 0, lexical order like `devices(p)`)."""
        return self._t(self.shard_tag(p), "tagged", tag)

    def rollout_seq(self) -> str:
        """Counter of rollout ids."""
        return self._t(self.rollouts_tag, "ro-seq")

    def rollouts(self) -> str:
        """Sorted set of every rollout id, scored by id."""
        return self._t(self.rollouts_tag, "rollouts")

    def rollouts_active(self) -> str:
        """Set of the ids of the rollouts that are not finished (what the worker's guard keeps a driver for)."""
        return self._t(self.rollouts_tag, "rollouts", "active")

    def rollout(self, rid: int | str) -> str:
        """Hash of one rollout: spec (JSON), state, counts, the walk's cursor and pass, the pending batch."""
        return self._t(self.rollouts_tag, "ro", str(rid))

    def rollout_sns(self, rid: int | str) -> str:
        """Sorted set of the sns a rollout's selector lists (scores 0), when it lists them."""
        return self._t(self.rollouts_tag, "ro", str(rid), "sns")

    def rollout_execs(self, rid: int | str) -> str:
        """Sorted set of the devices a rollout dispatched to, scored by dispatch time (ms)."""
        return self._t(self.rollouts_tag, "ro", str(rid), "execs")

    def rollout_results(self, rid: int | str) -> str:
        """Hash sn -> "<command idStr> <outcome>[ <settled, ms>]" of a rollout's executions."""
        return self._t(self.rollouts_tag, "ro", str(rid), "results")

    def rollout_inflight(self, rid: int | str) -> str:
        """Sorted set of a rollout's unfinished executions (sns), scored by their deadline (ms)."""
        return self._t(self.rollouts_tag, "ro", str(rid), "inflight")

    def rollout_driver(self, rid: int | str) -> str:
        """String: the RQ job id of the one driver of a rollout, with a TTL (its lease)."""
        return self._t(self.rollouts_tag, "ro", str(rid), "driver")
