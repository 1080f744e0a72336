"""Clients, devices and peripherals, their indexes and the events seen: their keys."""

from __future__ import annotations

from adapter.store.keys.base import KeyBase


class DeviceKeys(KeyBase):
    # clients, devices and peripherals (docs/design.md §5, §11). On the cluster a device's keys carry its tag
    # (`tag(sn)`) and the indexes are split into shards (`shards()`), each in the slot of its partition: what
    # one device's script touches is its own hash, its peripherals and the index shards of its own partition.
    def client(self, clientid: str) -> str:
        """Hash of one MQTT client: presence (online "1"/"0", connected_at, ended_through, version, online_time,
        offline_time, all ms) and, once the client is a device (`device` = "1"), its record: activeTime,
        bootTime, dur, procs, sys, versions (the last reports as JSON strings with `revtime`)."""
        return self._t(self.tag(clientid), "client", clientid)

    def presence_log(self, sn: str) -> str:
        """List of a device's presence transitions, newest first, at most `presence_log.LOG_MAX` (device.lua,
        uplink.lua): "<time ms> <1 online|0 offline> <reason>"; what its chart draws (docs/api.md "Series")."""
        return self._t(self.tag(sn), "presence-log", sn)

    def devices(self, p: int = 0) -> str:
        """Sorted set of the device sns of shard `p`, all scores 0 (lexical order: pages and sn prefixes by
        range); one shard holds every device on one Redis."""
        return self._t(self.shard_tag(p), "devices")

    def devices_online(self, p: int = 0) -> str:
        """Sorted set of the online device sns of shard `p` (scores 0)."""
        return self._t(self.shard_tag(p), "devices", "online")

    def devices_offline(self, p: int = 0) -> str:
        """Sorted set of the offline device sns of shard `p` (scores 0)."""
        return self._t(self.shard_tag(p), "devices", "offline")

    def peripheral(self, sn: str, nid: str) -> str:
        """Hash of one peripheral behind gateway `sn` (in `sn`'s slot): nId, gwId, sn, online, activeTime,
        revTime, msg."""
        return self._t(self.tag(sn), "peri", sn, nid)

    def peripheral_prefix(self, sn: str) -> str:
        """What `peripheral(sn, nid)` starts with, for Lua scripts that build it: `{prefix}{sn}:{nid}` (the
        prefix carries `sn`'s tag, so it serves only the peripherals of `sn` and of its partition)."""
        return self._t(self.tag(sn), "peri", "")

    def peripherals_of_gw_prefix(self, p: int = 0) -> str:
        """What `peripherals_of_gw(gw, p)` starts with, for Lua scripts: `{prefix}{gw}`."""
        return self._t(self.shard_tag(p), "peris", "gw", "")

    def peripherals(self, p: int = 0) -> str:
        """Sorted set of the peripherals reported by the devices of shard `p`, as `{sn}/{nId}`, scores 0."""
        return self._t(self.shard_tag(p), "peris")

    def peripherals_online(self, p: int = 0) -> str:
        return self._t(self.shard_tag(p), "peris", "online")

    def peripherals_offline(self, p: int = 0) -> str:
        return self._t(self.shard_tag(p), "peris", "offline")

    def peripherals_of_gw(self, gw_id: str, p: int = 0) -> str:
        """Sorted set of `{sn}/{nId}` members whose gwId is `gw_id`, reported by devices of shard `p` (the
        reporter's shard: all of one gateway's peripherals are the union over `shards()`)."""
        return self._t(self.shard_tag(p), "peris", "gw", gw_id)

    def page_anchors(self, index: str) -> str:
        """Sorted set of anchors of a sharded index (the cluster's merged pages, adapter/devices/paging.py):
        member = an index member, score = its global rank when it was seen; `index` names the index."""
        return self._t(self.meta_tag, "anchors", index)

    def peripherals_seen(self, sn: str) -> str:
        """Sorted set of the nIds device `sn` reports, scored by when it last reported each (revtime, s): what
        caps a gateway's peripherals and finds its stale ones."""
        return self._t(self.tag(sn), "peris", "seen", sn)

    def peripherals_seen_prefix(self, sn: str) -> str:
        """What `peripherals_seen(sn)` starts with, for Lua scripts: `{prefix}{sn}` (in `sn`'s slot)."""
        return self._t(self.tag(sn), "peris", "seen", "")

    def seen(self, event_key: str, owner: str | None = None) -> str:
        """Marks an event already applied (message ids), so that a redelivery changes nothing; in the slot of
        `owner` (the publishing clientid, or the sn of the command answered), whose script writes it. Only one
        Redis (no slots) may leave `owner` out."""
        if owner is None:
            if self.cluster:
                raise ValueError(f"seen({event_key!r}): a cluster needs the owner")
            return self._k("seen", event_key)
        return self._t(self.tag(owner), "seen", event_key)
