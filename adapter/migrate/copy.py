"""The walk's work on one page of source keys: whole keys by DUMP/RESTORE, sharded indexes re-split by each member's
device, keys that hold command ids rewritten with the new ids. Every write is idempotent (RESTORE REPLACE, ZADD,
HSET), so a page done twice (a resumed walk, SCAN's repeats) changes nothing."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from adapter.commands import ids as command_ids
from adapter.migrate.mapping import (
    Found,
    Move,
    classify,
    command_partition,
    move_of,
    renumber_expiry,
    renumber_result,
    split_members,
    whole_target,
)
from adapter.migrate.stores import Store
from adapter.store.types import as_text

CHUNK = 5000  # members a ZADD/HSET sends at most
_BY_ORDINAL = frozenset({"commands", "commands_from", "commands_of_sn", "commands_from_sn", "commands_active"})
PER_SN = frozenset({"commands_of_sn", "commands_from_sn", "commands_active"})


@dataclass
class Page:
    """What one page wrote, and what it left out (counted by rule)."""

    copied: Counter[str] = field(default_factory=Counter)
    left: Counter[str] = field(default_factory=Counter)
    dropped_commands: int = 0



def copy_page(source: Store, target: Store, keys: list[str], ids: dict[int, int]) -> Page:
    """Copy one page of source keys into the target (`ids`: old command id -> new; empty: ids kept)."""
    page = Page()
    whole: list[tuple[str, str, int | None, str]] = []  # source key, target key, new id for its hash, rule
    reads: list[tuple[str, Found]] = []
    for key in dict.fromkeys(keys):
        found = classify(key, source.keys.prefix)
        if found is None:
            page.left["(unknown)"] += 1
            continue
        move = move_of(found, target.keys)
        name = found.rule.name
        if move is Move.WHOLE:
            whole.append((key, whole_target(found, target.keys), None, name))
        elif move is Move.SPLIT or (move is Move.COMMAND and name not in ("command", "command_response")):
            reads.append((key, found))
        elif move is Move.COMMAND:
            old = int(found.groups["id"])
            new = ids.get(old, old if not ids else None)
            if new is None:
                page.dropped_commands += name == "command"
                page.left[name] += 1
                continue
            q = command_partition(new, target.keys)
            stem = "cmd" if name == "command" else "cmd-resp"
            whole.append((key, target.keys._t(target.keys.shard_tag(q), stem, str(new)),
                          new if ids and name == "command" else None, name))
        else:
            page.left[name] += 1
    _move_whole(source, target, whole, page)
    _rebuild(source, target, reads, ids, page)
    return page


def _move_whole(source: Store, target: Store, whole: list[tuple[str, str, int | None, str]], page: Page) -> None:
    if not whole:
        return
    with source.client.pipeline(transaction=False) as pipe:
        for key, *_ in whole:
            pipe.dump(key)
            pipe.pttl(key)
        replies = pipe.execute()
    with target.client.pipeline(transaction=False) as pipe:
        for (_, dst, new, name), payload, ttl in zip(whole, replies[::2], replies[1::2], strict=True):
            if payload is None or ttl == -2:  # gone since the walk saw it
                continue
            pipe.restore(dst, max(0, int(ttl)), payload, replace=True)
            if new is not None:
                pipe.hset(dst, mapping={"id": str(new)})
            page.copied[name] += 1
        pipe.execute()


def _rebuild(source: Store, target: Store, reads: list[tuple[str, Found]], ids: dict[int, int], page: Page) -> None:
    if not reads:
        return
    with source.client.pipeline(transaction=False) as pipe:
        for key, found in reads:
            if found.rule.name == "rollout_results":
                pipe.hgetall(key)
            else:
                pipe.zrange(key, 0, -1, withscores=True)
        replies = pipe.execute()
    zadds: dict[str, dict[str, float]] = defaultdict(dict)
    hsets: dict[str, dict[str, str]] = defaultdict(dict)
    for (_, found), reply in zip(reads, replies, strict=True):
        name = found.rule.name
        page.copied[name] += 1
        if name == "rollout_results":
            dst = whole_target(found, target.keys)
            hsets[dst] |= {as_text(k): renumber_result(as_text(v), ids) for k, v in reply.items()}
        elif found.rule.move is Move.SPLIT:
            scores = {as_text(m): float(s) for m, s in reply}
            for dst, names in split_members(found, target.keys, scores).items():
                zadds[dst] |= {m: scores[m] for m in names}
        else:
            for m, s in reply:
                placed = _command_member(found, target, as_text(m), float(s), ids)
                if placed is None:
                    continue
                dst, member, score = placed
                zadds[dst][member] = score
    with target.client.pipeline(transaction=False) as pipe:
        for dst, scored in zadds.items():
            items = list(scored.items())
            for i in range(0, len(items), CHUNK):
                pipe.zadd(dst, dict(items[i:i + CHUNK]))
        for dst, fields in hsets.items():
            if fields:
                pipe.hset(dst, mapping=fields)
        pipe.execute()


def _command_member(found: Found, target: Store, member: str, score: float,
                    ids: dict[int, int]) -> tuple[str, str, float] | None:
    """Where a member of a command index goes: (target key, member, score), None when its command has no new id."""
    name, keys = found.rule.name, target.keys
    if name == "commands_expiry":
        if not ids:
            m = member.split(",", 1)[0].strip('["')
            new = int(m) if m.isdigit() else 0
        else:
            renamed = renumber_expiry(member, ids)
            if renamed is None:
                return None
            member, new = renamed
    else:
        old = int(member) if member.isdigit() else 0
        new = ids.get(old, old if not ids else 0)
        if not new:
            return None
        member = str(new)
    if name in _BY_ORDINAL:
        score = float(command_ids.ordinal(new))
    tag = keys.tag(found.groups["sn"]) if name in PER_SN else keys.shard_tag(command_partition(new, keys))
    return keys._t(tag, found.rest), member, score

