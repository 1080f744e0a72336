"""Where every key of a store goes when it changes layout: pure functions, no Redis.

A key is `<prefix>:[<tag>:]<rest>` (adapter/store/keys/base.py `_t`): the rest never depends on the layout, only the
tag does. So a key is read as (tag, rest), `classify` names the rule its rest matches (one per key builder of
adapter/store/keys/, `RULES`; tests/unit/test_migrate_mapping.py fails for a builder without one), and the target's
spelling is the target's tag for what the rule says the key belongs to, followed by the same rest:

* `WHOLE` keys move as they are (DUMP/RESTORE): a global key into its fixed slot (`auth`, `tgt`, `meta`, `ro`), a
  device's key into its device's slot (`sn`), a one-Redis dedup mark (`seen`) only into one Redis;
* `SPLIT` keys are sharded indexes: each member goes to the shard of its device in the target (`member_sn`);
* `COMMAND` keys hold command ids, which a cluster target renumbers (`assign_ids`: on a cluster an id carries its
  partition, adapter/commands/ids.py);
* `TARGET` keys (a target's engine state, attempts, dead letters) and `SUM` keys (counters) are rebuilt per target
  and summed once the walk is done (adapter/migrate/finish.py);
* `BACKLOG` keys (delivery streams, retries, holds) are not copied: a migration refuses a store whose backlog is not
  empty (docs/cluster.md "Moving a store between layouts");
* `DROP` keys are leases, caches, hints and replicas that the target's processes rebuild, RQ's chains (RQ's keys are
  not migrated) and a previous migration's state.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from adapter.commands import ids as command_ids
from adapter.store.keys import Keys

_FIXED_ATTR = {"auth": "auth_tag", "tgt": "targets_tag", "meta": "meta_tag", "ro": "rollouts_tag"}


class Move(StrEnum):
    WHOLE = "whole"
    SPLIT = "split"
    COMMAND = "command"
    TARGET = "target"
    SUM = "sum"
    BACKLOG = "backlog"
    DROP = "drop"


@dataclass(frozen=True)
class Rule:
    name: str  # the key builder of adapter/store/keys/ (or builders: `also`)
    pattern: re.Pattern[str]  # the rest of the key, after the prefix and the tag
    move: Move
    slot: str = ""  # WHOLE: "auth" | "tgt" | "meta" | "ro" | "none" | "sn" (the group `sn`) | "seen"
    also: tuple[str, ...] = ()  # other builders that spell keys of this rule
    member: str = ""  # SPLIT: "sn" (the member is an sn) | "sn/" (`<sn>/<nId>`)


def _r(name: str, rest: str, move: Move, slot: str = "", *, also: tuple[str, ...] = (), member: str = "") -> Rule:
    return Rule(name, re.compile(rest, re.DOTALL), move, slot, also, member)


_TARGET = r"(?P<target>(?:callback|route):[^:]+)"
W, S, C, T, SUM, B, D = Move.WHOLE, Move.SPLIT, Move.COMMAND, Move.TARGET, Move.SUM, Move.BACKLOG, Move.DROP

# first match wins: the more specific patterns come first
RULES: tuple[Rule, ...] = (
    # access
    _r("users", r"users", W, "auth"),
    _r("user", r"user:(?P<name>.+)", W, "auth"),
    _r("token", r"token:(?P<digest>.+)", W, "auth"),
    _r("user_tokens", r"user-tokens:(?P<name>.+)", W, "auth"),
    _r("login_failures_pair", r"login-fail:pair:.+", W, "auth"),
    _r("login_failures_ip", r"login-fail:ip:.+", W, "auth"),
    _r("authn_failures_sn", r"authn-fail:sn:.+", W, "auth"),
    _r("authn_failures_host", r"authn-fail:host:.+", W, "auth"),
    _r("metrics", r"metrics", SUM, also=("metrics_in",)),
    _r("credential", r"cred:(?P<sn>.+)", W, "sn"),
    _r("credentials", r"creds", S, member="sn"),
    _r("authn_cache", r"authn-ok:.+", D),
    # devices
    _r("client", r"client:(?P<sn>.+)", W, "sn"),
    _r("presence_log", r"presence-log:(?P<sn>.+)", W, "sn"),
    _r("devices_online", r"devices:online", S, member="sn"),
    _r("devices_offline", r"devices:offline", S, member="sn"),
    _r("devices", r"devices", S, member="sn"),
    _r("peripherals_seen", r"peris:seen:(?P<sn>.+)", W, "sn"),
    _r("peripheral", r"peri:(?P<sn>.+):(?P<nid>[^:]+)", W, "sn"),  # an nId never holds ":" (protocol/uplink.py)
    _r("peripherals_online", r"peris:online", S, member="sn/"),
    _r("peripherals_offline", r"peris:offline", S, member="sn/"),
    _r("peripherals_of_gw", r"peris:gw:(?P<gw>.+)", S, member="sn/"),
    _r("peripherals", r"peris", S, member="sn/"),
    _r("page_anchors", r"anchors:.+", D),
    _r("seen", r"seen:.+", W, "seen"),
    # targets and the delivery engine
    _r("target_seq", r"seq:(?:callback|route)", W, "tgt"),
    _r("targets", r"(?:callbacks|routes)", W, "tgt"),
    _r("routes_enabled", r"routes:enabled", W, "tgt"),
    _r("routes_version", r"routes:version", W, "tgt"),
    _r("callbacks_enabled_of", r"callbacks:enabled:(?P<type>[^:]+)", W, "tgt", also=("callbacks_enabled_in",)),
    _r("callback_stats", r"callbacks:stats:(?P<type>[^:]+)", SUM, also=("callback_stats_in",)),
    _r("target_series", r"stats:(?:callback|route):[^:]+:.+", W, "tgt"),
    _r("target", r"(?:callback|route):[^:]+", W, "tgt", also=("delivery_counts",)),
    _r("delivery_retry", r"dq:retry", B),
    _r("delivery_hold", rf"dq:hold:{_TARGET}:(?P<sn>.+)", B),
    _r("delivery_holds", r"dq:holds:\d+", B),
    _r("delivery_held", rf"dq:held:{_TARGET}", D),
    _r("delivery_state", rf"dq:state:{_TARGET}", T, also=("delivery_counts",)),
    _r("delivery_lease", r"dq:lease:\d+", D),
    _r("delivery_pumps", r"dq:pumps", D),
    _r("delivery_stream", r"dq:\d+", B),
    _r("attempts", rf"attempts:{_TARGET}", T),
    _r("dead_index", rf"dead-idx:{_TARGET}", T),
    _r("dead", rf"dead:{_TARGET}", T),
    # commands
    _r("command_seq", r"cmd-seq:\d{8}", D),
    _r("command_response", r"cmd-resp:(?P<id>\d+)", C),
    _r("command", r"cmd:(?P<id>\d+)", C),
    _r("commands_from_sn", r"cmds:from-sn:(?P<sender>[^:]+):(?P<sn>.+)", C),
    _r("commands_from", r"cmds:from:(?P<sender>.+)", C),
    _r("commands_of_sn", r"cmds:sn:(?P<sn>.+)", C),
    _r("commands_active", r"cmds:active:(?P<sn>.+)", C),
    _r("commands_expiry", r"cmds:expiry", C),
    _r("commands_due", r"cmds:due", C),
    _r("commands", r"cmds", C),
    # rollouts and tags
    _r("device_tags", r"tags:sn:(?P<sn>.+)", W, "sn"),
    _r("tagged", r"tagged:.+", S, member="sn"),
    _r("rollout_seq", r"ro-seq", W, "ro"),
    _r("rollouts_active", r"rollouts:active", W, "ro"),
    _r("rollouts", r"rollouts", W, "ro"),
    _r("rollout_driver", r"ro:\d+:driver", D),
    _r("rollout_results", r"ro:(?P<rid>\d+):results", C),
    _r("rollout_sns", r"ro:\d+:sns", W, "ro"),
    _r("rollout_execs", r"ro:\d+:execs", W, "ro"),
    _r("rollout_inflight", r"ro:\d+:inflight", W, "ro"),
    _r("rollout", r"ro:\d+", W, "ro"),
    # ops
    _r("stats_lease", r"stats:lease", D),
    _r("stats_series", r"stats:.+", W, "meta"),
    _r("job_chain", r"jobs:chain:.+", D),
    _r("job_progress", r"jobs:progress:.+", W, "meta"),
    _r("retention_cursor", r"jobs:retention:.+", D),
    _r("migration_ids", r"migrate:ids", D),
    _r("migration", r"migrate", D),
    _r("meta", r"meta", D),
)
BY_NAME = {rule.name: rule for rule in RULES}

# builders that spell no key of their own: what a script appends to, a pub/sub channel, RQ's queue names
NOT_KEYS = frozenset({"routes_channel", "queue", "delivery_stream_prefix", "command_prefix", "command_response_prefix",
                      "commands_from_prefix", "commands_of_sn_prefix", "commands_from_sn_prefix",
                      "commands_active_prefix", "delivery_hold_prefix", "peripheral_prefix",
                      "peripherals_of_gw_prefix", "peripherals_seen_prefix"})


@dataclass(frozen=True)
class Found:
    rule: Rule
    tag: str  # "" on one Redis
    rest: str
    groups: dict[str, str]

    @property
    def replica(self) -> bool:
        """A copy the cluster keeps in a partition's slot (the enabled callbacks' replicas): rebuilt, not moved."""
        return self.rule.name == "callbacks_enabled_of" and self.tag.startswith("{p")


def split_key(key: str, prefix: str) -> tuple[str, str] | None:
    """(tag, rest) of a key of the store under `prefix`; None for a key that is not under it."""
    head = prefix + ":"
    if not key.startswith(head):
        return None
    body = key[len(head):]
    if body.startswith("{"):
        end = body.find("}:")
        if end > 0:
            return body[:end + 1], body[end + 2:]
    return "", body


def classify(key: str, prefix: str) -> Found | None:
    """The rule of a key (None: not under the prefix, or no rule knows it)."""
    parts = split_key(key, prefix)
    if parts is None:
        return None
    tag, rest = parts
    for rule in RULES:
        m = rule.pattern.fullmatch(rest)
        if m is not None:
            return Found(rule, tag, rest, {k: v for k, v in m.groupdict().items() if v is not None})
    return None


def move_of(found: Found, target: Keys) -> Move:
    """What the walk does with a key, given the target's layout."""
    if found.replica or (found.rule.slot == "seen" and target.cluster):
        return Move.DROP  # replicas are rebuilt; a one-Redis dedup mark does not say whose slot it belongs to
    return found.rule.move


def whole_target(found: Found, target: Keys) -> str:
    """The target's spelling of a key that moves whole."""
    slot = found.rule.slot
    if slot == "sn":
        tag = target.tag(found.groups["sn"])
    elif slot in ("none", "seen"):
        tag = ""
    else:
        tag = getattr(target, _FIXED_ATTR[slot])
    return target._t(tag, found.rest)


def member_sn(rule: Rule, member: str) -> str:
    """The device a member of a sharded index belongs to."""
    return member.partition("/")[0] if rule.member == "sn/" else member


def split_members(found: Found, target: Keys, members: Iterable[str]) -> dict[str, list[str]]:
    """The members of a sharded index, by the target's shard key they go to."""
    out: dict[str, list[str]] = defaultdict(list)
    for m in members:
        out[target._t(target.shard_tag(target.shard(member_sn(found.rule, m))), found.rest)].append(m)
    return out


# --- command ids ----------------------------------------------------------------------------------------------
def assign_ids(commands: Iterable[tuple[int, str]], target: Keys) -> dict[int, int]:
    """New ids for (id, sn) pairs moved into `target`: on one Redis the same ids; on a cluster each command gets,
    within its day, the next local number of its device's partition, in the order of the old ids (so a partition's
    commands keep their creation order): seq = local × P + partition (adapter/commands/ids.py)."""
    pairs = sorted(commands, key=lambda c: command_ids.ordinal(c[0]))
    if not target.cluster:
        return {cid: cid for cid, _ in pairs}
    local: dict[tuple[str, int], int] = defaultdict(int)
    out = {}
    for cid, sn in pairs:
        day, q = str(cid // command_ids.SEQ_SPAN), target.shard(sn)
        local[day, q] += 1
        out[cid] = command_ids.make_id(day, local[day, q] * target.cluster_partitions + q)
    return out


def command_partition(cid: int, target: Keys) -> int:
    return command_ids.partition_of(cid, target.cluster_partitions)


def day_counters(new_ids: Iterable[int], target: Keys) -> dict[str, int]:
    """The value every day counter of the target must start from (`command_seq(day, p)` -> its last number), so
    that the ids the target's processes make next follow the moved ones."""
    out: dict[str, int] = {}
    for cid in new_ids:
        day, seq = divmod(cid, command_ids.SEQ_SPAN)
        p = command_partition(cid, target)
        local = seq // target.cluster_partitions if target.cluster else seq
        key = target.command_seq(str(day), p)
        out[key] = max(out.get(key, 0), local)
    return out


def renumber_expiry(member: str, ids: dict[int, int]) -> tuple[str, int] | None:
    """A `commands_expiry` member (`["<id>","<from>","<sn>"]` as cjson wrote it) with its new id, and that id; None
    when the id has none. The id is replaced in the text: cjson's escapes stay as they were."""
    m = re.match(r'\["?(\d+)"?,', member)
    if m is None or int(m.group(1)) not in ids:
        return None
    new = ids[int(m.group(1))]
    return member[:m.start(1)] + str(new) + member[m.end(1):], new


def renumber_result(value: str, ids: dict[int, int]) -> str:
    """A rollout's result (`<command idStr> <outcome>[ <settled>]`) with the command's new id."""
    head, sep, tail = value.partition(" ")
    return f"{ids[int(head)]}{sep}{tail}" if head.isdigit() and int(head) in ids else value
