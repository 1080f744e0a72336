"""Every Redis key the service writes, built under one prefix. No other module spells a key.

RQ keeps its own `rq:*` keys; the queue names it is given come from here too.

Two layouts (docs/cluster.md). On one Redis (`cluster_partitions=0`, the default) keys are exactly what they always
were: `iot:client:<sn>`, one `iot:devices` index. On Redis Cluster every key carries a hash tag so that whatever
one script touches lives in one slot: a device's keys, its index shards, its delivery stream and its commands
carry the tag of its partition (`partition_of(sn)`, P = `cluster_partitions`), written `iot:{p7}:client:<sn>`;
low-rate global data lives in one fixed slot each (`{auth}`, `{tgt}`, `{meta}`).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING

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


class Keys:
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

    @classmethod
    def of(cls, settings: Settings) -> Keys:
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

    # users and login
    def users(self) -> str:
        """Set of user names."""
        return self._t(self.auth_tag, "users")

    def user(self, name: str) -> str:
        """Hash: role, hash (argon2id), created."""
        return self._t(self.auth_tag, "user", name)

    def token(self, token_digest: str) -> str:
        """Hash: user, role; expires with the login (the token itself is never stored)."""
        return self._t(self.auth_tag, "token", token_digest)

    def user_tokens(self, name: str) -> str:
        """Set of a user's token digests, so that removing a user or its password ends its logins."""
        return self._t(self.auth_tag, "user-tokens", name)

    def login_failures_pair(self, name: str, address: str) -> str:
        """Hash (throttle.lua): a user name's login attempts from one client address, and its lock."""
        return self._t(self.auth_tag, "login-fail", "pair", name, address)

    def login_failures_ip(self, address: str) -> str:
        """Hash (throttle.lua): one client address's login attempts, whatever the user name."""
        return self._t(self.auth_tag, "login-fail", "ip", address)

    # metrics shared by every API process
    def metrics(self) -> str:
        """Hash of counters: field = metric name with labels."""
        return self._t(self.meta_tag, "metrics")

    def metrics_in(self, p: int) -> str:
        """The counters a script of shard `p` adds to (it may touch only its own slot); `GET /metrics` sums them
        with `metrics()`. On one Redis it is `metrics()` itself."""
        return self._t(self.shard_tag(p), "metrics")

    # queues
    def queue(self, name: str) -> str:
        """An RQ queue name (RQ adds its own `rq:queue:` in front)."""
        return f"{self.prefix}-{name}"

    # clients, devices and peripherals (docs/design.md §5, §11). On the cluster a device's keys carry its tag
    # (`tag(sn)`) and the indexes are split into shards (`shards()`), each in the slot of its partition: what
    # one device's script touches is its own hash, its peripherals and the index shards of its own partition.
    def client(self, clientid: str) -> str:
        """Hash of one MQTT client: presence (online "1"/"0", connected_at, ended_through, version, online_time,
        offline_time, all ms) and, once the client is a device (`device` = "1"), its record: activeTime,
        bootTime, dur, procs, sys, versions (the last reports as JSON strings with `revtime`)."""
        return self._t(self.tag(clientid), "client", clientid)

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

    # device credentials for EMQX's HTTP authentication (issue: run with real EMQX)
    def credential(self, sn: str) -> str:
        """Hash of one device's credential (in `sn`'s slot): hash (argon2id of the secret), created (s)."""
        return self._t(self.tag(sn), "cred", sn)

    def credentials(self, p: int = 0) -> str:
        """Sorted set of the sns of shard `p` that have a credential, scored by creation time (s)."""
        return self._t(self.shard_tag(p), "creds")

    def authn_failures_sn(self, sn: str) -> str:
        """Hash (throttle.lua): secret checks of one device sn that EMQX asked for, and its lock. In `{auth}` with
        the peer's bucket (one throttle.lua call counts both); only checks that run argon2 touch it."""
        return self._t(self.auth_tag, "authn-fail", "sn", sn)

    def authn_failures_host(self, peerhost: str) -> str:
        """Hash (throttle.lua): device secret checks from one peer address (EMQX's `peerhost`)."""
        return self._t(self.auth_tag, "authn-fail", "host", peerhost)

    def authn_cache(self, sn: str) -> str:
        """A short-lived mark that a device's secret was verified (sha256 of sn + secret), so that reconnect
        storms do not each pay a full argon2id check. In `sn`'s slot, beside its credential."""
        return self._t(self.tag(sn), "authn-ok", sn)

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

    # --- RQ jobs: periodic chains and progress (adapter/jobs/entry.py, docs/delivery.md) ----------------------
    def job_chain(self, name: str) -> str:
        """String: the RQ job id of the next run of periodic job `name` (one chain, however many workers). Kept on
        RQ's Redis, beside the jobs it names (jobs/chains.py uses the queue's connection)."""
        return self._t(self.meta_tag, "jobs", "chain", name)

    def job_progress(self, job_id: str) -> str:
        """Hash of one job's progress: kind, state, done, total, error, created, updated; expires."""
        return self._t(self.meta_tag, "jobs", "progress", job_id)

    def retention_cursor(self, walk: str) -> str:
        """String: where retention's walk `walk` resumes (an index member or a SCAN cursor)."""
        return self._t(self.meta_tag, "jobs", "retention", walk)
