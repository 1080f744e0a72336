"""Counts per kind on both sides of a migration, and the table that compares them.

Every key under the prefix is classified (adapter/migrate/mapping.py) and counted by its rule: a key of its own
(a client, a peripheral, a command, a callback) counts 1; a sharded index counts its members (its shards differ
between layouts, its members do not); commands also count per state, and counters by their sum. What a migration
does not copy (leases, caches, replicas, dedup marks, the engine's per-partition state and attempts) is not counted.
"""

from __future__ import annotations

from collections import Counter

from adapter.migrate.copy import PER_SN as _PER_SN
from adapter.migrate.finish import number
from adapter.migrate.mapping import Found, Move, classify, command_partition, whole_target
from adapter.migrate.stores import Store
from adapter.store.keys import Keys
from adapter.store.types import as_text

_MEMBERS = frozenset({"commands", "commands_from", "commands_expiry", "commands_due", "dead", "dead_index",
                      "commands_of_sn", "commands_from_sn", "commands_active", "rollout_results"})
_NOT_COUNTED = frozenset({"seen", "attempts", "delivery_state", "command_seq"})
LABELS = {"client": "clients", "devices": "devices", "devices_online": "devices online",
          "devices_offline": "devices offline", "peripheral": "peripherals", "callback": "callbacks",
          "route": "routes", "user": "users", "credential": "credentials", "rollout": "rollouts",
          "commands_due": "pending commands", "command": "commands",
          # the indexes of the kinds above, under names of their own
          "users": "users (set)", "credentials": "credentials (index)", "peripherals": "peripherals (index)"}



def census(store: Store, batch: int = 1000) -> Counter[str]:
    """Counts per kind of one store."""
    out: Counter[str] = Counter()
    measured: list[tuple[str, str, str]] = []  # key, row, what to read
    prefix = store.keys.prefix
    for key in store.walk(batch):
        found = classify(key, prefix)
        if found is None:
            out["(unknown keys)"] += 1
            continue
        rule = found.rule
        if rule.move in (Move.DROP, Move.BACKLOG) or rule.name in _NOT_COUNTED or found.replica:
            continue
        name = rule.name
        out["keys outside their slot"] += key != home(found, store.keys, key)
        if name == "target":
            name = found.rest.partition(":")[0]
        label = LABELS.get(name, name)
        if rule.move is Move.SPLIT or name in _MEMBERS:
            if name in ("commands_of_sn", "commands_from_sn", "commands_active", "rollout_results"):
                out[f"{label} (keys)"] += 1
            measured.append((key, label if rule.move is Move.SPLIT or name == "commands_due" else f"{label} (members)",
                             "members"))
        elif rule.move is Move.SUM:
            measured.append((key, f"{label} (sum)", "sum"))
        else:
            out[label] += 1
            if name == "command":
                measured.append((key, "commands in state", "state"))
    for i in range(0, len(measured), batch):
        chunk = measured[i:i + batch]
        with store.client.pipeline(transaction=False) as pipe:
            for key, _, what in chunk:
                if what == "state":
                    pipe.hmget(key, ["state", "sn"])
                elif what == "sum":
                    pipe.hvals(key)
                else:
                    pipe.type(key)
            replies = pipe.execute()
        with store.client.pipeline(transaction=False) as pipe:
            for (key, _, what), reply in zip(chunk, replies, strict=True):
                if what == "members":
                    kind = as_text(reply)
                    if kind == "hash":
                        pipe.hlen(key)
                    elif kind == "set":
                        pipe.scard(key)
                    else:
                        pipe.zcard(key)
            sizes = iter(pipe.execute())
        for (key, row, what), reply in zip(chunk, replies, strict=True):
            if what == "state":
                state, sn = (as_text(v) for v in reply)
                out[f"{row} {state or '?'}"] += 1
                cid = int(key.rpartition(":")[2])  # `…:cmd:<id>`
                out["commands outside their device's partition"] += (
                    store.keys.cluster and command_partition(cid, store.keys) != store.keys.shard(sn))
            elif what == "sum":
                out[row] += round(sum(number(v) for v in reply))
            else:
                out[row] += int(next(sizes))
    return out



def home(found: Found, keys: Keys, key: str) -> str:
    """Where the layout of `keys` spells a key: a device's key in its device's slot, a command in its id's partition
    (which must be its device's: checked by the service's scripts, not here), a global key in its fixed slot."""
    name = found.rule.name
    if name in ("command", "command_response"):
        return keys._t(keys.shard_tag(command_partition(int(found.groups["id"]), keys)), found.rest)
    if "sn" in found.groups and name in _PER_SN:
        return keys._t(keys.tag(found.groups["sn"]), found.rest)
    if found.rule.move is Move.WHOLE and found.rule.slot != "seen":
        return whole_target(found, keys)
    return key


def compare(source: Counter[str], target: Counter[str]) -> tuple[list[str], bool]:
    """The table's lines and whether every count matches."""
    rows = sorted(set(source) | set(target), key=lambda r: (r not in LABELS.values(), r))
    width = max([len(r) for r in rows] + [4])
    lines = [f"{'kind':<{width}}  {'source':>10}  {'target':>10}", f"{'-' * width}  {'-' * 10}  {'-' * 10}"]
    ok = True
    for row in rows:
        same = source[row] == target[row]
        ok = ok and same
        lines.append(f"{row:<{width}}  {source[row]:>10}  {target[row]:>10}{'' if same else '  MISMATCH'}")
    return lines, ok
