"""Remote commands: their keys."""

from __future__ import annotations

from adapter.store.keys.base import KeyBase


class CommandKeys(KeyBase):
    # --- remote control: commands to devices (issue 7, docs/commands.md) ---------------------------------
    # On the cluster a command lives in the slot of its device: its partition `p` = shard(sn), which its id
    # carries (adapter/commands/ids.py); the per-partition queues and indexes are in shard_tag(p), the per-sn
    # ones in tag(sn) (the same slot). On one Redis `p` is ignored: the keys are what they always were.
    def command_seq(self, day: str, p: int) -> str:
        """Counter of one day's command ids (`YYYYMMDD`), one per partition on the cluster; expires two days
        after its last use."""
        return self._t(self.shard_tag(p), "cmd-seq", day)

    def command(self, id_str: str, p: int) -> str:
        """Hash of one command (the v1 fields plus phase, expireAt, errors, rewake); expires with it."""
        return self._t(self.shard_tag(p), "cmd", id_str)

    def command_prefix(self, p: int) -> str:
        """What `command(id, p)` starts with, for Lua scripts."""
        return self._t(self.shard_tag(p), "cmd", "")

    def command_response(self, id_str: str, p: int) -> str:
        """String: the device's last answer to a command (JSON with `revtime`); expires with the command."""
        return self._t(self.shard_tag(p), "cmd-resp", id_str)

    def command_response_prefix(self, p: int) -> str:
        return self._t(self.shard_tag(p), "cmd-resp", "")

    def commands(self, p: int) -> str:
        """Sorted set of every live command id (of partition `p` on the cluster), scored by its ordinal
        (creation order); a listing merges the partitions by score."""
        return self._t(self.shard_tag(p), "cmds")

    def commands_from(self, sender: str, p: int) -> str:
        """Sorted set of the live command ids of one `from` (of partition `p` on the cluster), by ordinal."""
        return self._t(self.shard_tag(p), "cmds", "from", sender)

    def commands_from_prefix(self, p: int) -> str:
        return self._t(self.shard_tag(p), "cmds", "from", "")

    def commands_of_sn(self, sn: str) -> str:
        """Sorted set of the live command ids of one device, scored by ordinal."""
        return self._t(self.tag(sn), "cmds", "sn", sn)

    def commands_of_sn_prefix(self, p: int) -> str:
        """What `commands_of_sn(sn)` starts with for every sn of partition `p`."""
        return self._t(self.shard_tag(p), "cmds", "sn", "")

    def commands_from_sn(self, sender: str, sn: str) -> str:
        """Sorted set of the live command ids of one `from` (never holds ':') and one device."""
        return self._t(self.tag(sn), "cmds", "from-sn", sender, sn)

    def commands_from_sn_prefix(self, p: int) -> str:
        """What `commands_from_sn(from, sn)` starts with for every sn of partition `p`: `{prefix}{from}:{sn}`."""
        return self._t(self.shard_tag(p), "cmds", "from-sn", "")

    def commands_active(self, sn: str) -> str:
        """Sorted set of one device's commands that are not finished (what its coming online wakes)."""
        return self._t(self.tag(sn), "cmds", "active", sn)

    def commands_active_prefix(self, p: int) -> str:
        """What `commands_active(sn)` starts with for every sn of partition `p`."""
        return self._t(self.shard_tag(p), "cmds", "active", "")

    def commands_expiry(self, p: int) -> str:
        """Sorted set of `[id, from, sn]` (JSON) scored by expiry (ms): what pruning removes from the indexes."""
        return self._t(self.shard_tag(p), "cmds", "expiry")

    def commands_due(self, p: int) -> str:
        """Sorted set of command ids scored by when the runner must look at them next (ms): send, resend,
        retry after a broker error, or give up after the ack timeout."""
        return self._t(self.shard_tag(p), "cmds", "due")
