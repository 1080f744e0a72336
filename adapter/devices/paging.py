"""Exact offset pages over a global index split into N score-0 sorted sets (the cluster's index shards), without
walking the offset (docs/cluster/plan.md §4). Pure logic: it speaks in rounds of commands and never does I/O, so
the same code runs against Redis (adapter/devices/reads.py sends each round to every primary at once) and against
sorted Python lists in the unit tests (`Memory`).

A command is `(target, name, *args)`: target = a shard number, or `META` for the index's anchor set
(`keys.page_anchors`). Names used: ZCARD, ZLEXCOUNT, ZRANGE (by index), and on `META` ZRANGE BYSCORE REV and ZADD.

`select(run, shards, offset, limit, prefix)`:
1. one round: every shard's ZCARD (or, with an sn prefix, its ZLEXCOUNT below and up to the range), and the
   nearest anchor at or below `offset` (no prefix only);
2. an anchor: one round of ZLEXCOUNT(-, (anchor) gives every shard's rank at it, so its exact global rank;
   kept as the bound when that rank is <= offset (the anchor may be stale or even gone: the count is exact);
3. while more than `MERGE_MAX` members remain to skip: a pivot one shard `step` further (ZRANGE by index,
   O(log n)) and every shard's rank at it (one round); shards are hash-random, so the pivot's global rank lands
   ~N·step ± sqrt(N·left) further: aim 3 of those short;
4. the k-way merge from the bound: `q` members of every shard (one round), sorted, skip, take `limit`; a shard
   whose run was cut before the last member taken is asked for more (rare: exactness is kept).
A deep page whose bound did not come from a near anchor leaves its first member as a new anchor (`writes`, for
the caller to send with its next round), so the next deep page near it costs rounds 1, 2, 4 only; with a `hint`
(the caller's copy of the anchors) rounds 1 and 2 are one: any page then costs what page 1 costs.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

META = -1
MERGE_MAX = 3000  # merge directly when at most this many members remain to skip (48 shards: ~85 each)
ANCHOR_EVERY = 1000  # a deep page farther than this from its anchor leaves a new one
Cmd = tuple[Any, ...]
Run = Callable[[list[Cmd]], Awaitable[list[Any]]]


@dataclass
class Selection:
    total: int
    members: list[str]
    rounds: int = 0
    writes: list[Cmd] = field(default_factory=list)


def prefix_bounds(prefix: str) -> tuple[str, str, bytes]:
    """(below, low, high) lex bounds of the members starting with `prefix`; `high` is bytes ending in 0xff,
    which no UTF-8 text holds."""
    return "(" + prefix, "[" + prefix, b"[" + prefix.encode() + b"\xff"


def _step(left: int, shards: int) -> int:
    """How far into one shard to take the next pivot: its global rank lands ~shards·step ± sqrt(shards·left)
    further; aim 3 sqrt(shards·left) short, so an overshoot is rare (1M/48: 500k -> 15k -> 2.5k -> merge)."""
    return max(1, int(left - 3 * math.sqrt(shards * left)) // shards)


def _run_length(need: int, shards: int) -> int:
    """Members per shard for a merge of `need`: the mean, plus 3 standard deviations, plus a few."""
    mean = need / shards
    return math.ceil(mean + 3 * math.sqrt(mean)) + 4


async def select(run: Run, shards: int, offset: int, limit: int, prefix: str | None = None,
                 anchors: bool = False, hint: tuple[str, float] | None = None) -> Selection:
    """(total, members) of the page at `offset` of the merged shards, optionally only members starting with
    `prefix`; `anchors` uses and feeds the anchor set (unfiltered indexes only). `hint` is an anchor the caller
    already knows (its copy of the anchor set: member, rank when seen): its ranks are asked in the first round
    instead of looking an anchor up; a stale or vanished hint costs nothing but the rounds it fails to save.

    When the page is expected within MERGE_MAX of where the first round starts (the range's start, or the hint),
    that round also fetches every shard's run from there (ZRANGE BYLEX LIMIT 0 q: no offset walked), so the
    page needs no further round unless a run turns out short."""
    out = Selection(0, [])

    async def go(cmds: list[Cmd]) -> list[Any]:
        out.rounds += 1
        return await run(cmds)

    every = range(shards)
    use_anchor = anchors and not prefix and offset > MERGE_MAX
    if prefix:
        below, _, high = prefix_bounds(prefix)
        first: list[Cmd] = [(i, "ZLEXCOUNT", "-", below) for i in every]
        first += [(i, "ZLEXCOUNT", "-", high) for i in every]
    else:
        first = [(i, "ZCARD") for i in every]
    if use_anchor and hint is not None:
        first += [(i, "ZLEXCOUNT", "-", "(" + hint[0]) for i in every]
    elif use_anchor:
        first.append((META, "ZRANGE", offset, "-inf", "BYSCORE", "REV", "LIMIT", 0, 1))
    # the speculative runs: from the lex bound the page is expected to start near
    start: str | None = None
    expect = offset
    from_hint = use_anchor and hint is not None
    if hint is not None and from_hint:
        start, expect = "[" + hint[0], offset - int(hint[1])
    elif not use_anchor:
        start = "[" + prefix if prefix else "-"
    spec = start is not None and 0 <= expect <= MERGE_MAX and limit > 0
    q0 = _run_length(expect + limit, shards)
    if spec:
        first += [(i, "ZRANGE", start, high if prefix else "+", "BYLEX", "LIMIT", 0, q0) for i in every]
    got = await go(first)
    if prefix:
        base, ends = [int(x) for x in got[:shards]], [int(x) for x in got[shards:2 * shards]]
    else:
        base, ends = [0] * shards, [int(x) for x in got[:shards]]
    out.total = sum(e - b for b, e in zip(base, ends, strict=True))
    if offset >= out.total or limit <= 0:
        return out
    a, r = list(base), 0
    near = hinted = False
    at: list[int] | None = None
    if use_anchor and hint is not None:
        at = [int(x) for x in got[shards:2 * shards]]
    elif use_anchor and got[-1]:
        anchor = str(got[-1][0])
        at = [int(x) for x in await go([(i, "ZLEXCOUNT", "-", "(" + anchor) for i in every])]
    if at is not None:
        rank = sum(at)
        if rank <= offset:
            a, r = at, rank
            near = offset - rank <= ANCHOR_EVERY
            hinted = from_hint
    runs: list[list[str]]  # members as the client decodes them (str)
    if spec and (hinted or not from_hint) and offset - r <= MERGE_MAX:
        runs = list(got[-shards:])
        cut = [i for i in every if len(runs[i]) == q0 and a[i] + q0 < ends[i]]
        return await _merged(out, go, runs, cut, a, ends, q0, offset - r, limit, prefix, anchors and not near)
    step = _step(offset - r, shards)
    while offset - r > MERGE_MAX and step > 0:
        j = max(every, key=lambda i: ends[i] - a[i])
        index = min(a[j] + step, ends[j] - 1)
        pivot = (await go([(j, "ZRANGE", index, index)]))[0]
        if not pivot:
            break  # the shard shrank in between: merge from where we are
        at = [int(x) for x in await go([(i, "ZLEXCOUNT", "-", "(" + str(pivot[0])) for i in every])]
        rank = sum(x - b for x, b in zip(at, base, strict=True))
        if r <= rank <= offset:
            a, r = at, rank
            step = _step(offset - r, shards)
        else:
            step //= 2
    skip = offset - r
    q = _run_length(skip + limit, shards)
    want = [max(0, min(q, ends[i] - a[i])) for i in every]
    asked = [i for i in every if want[i] > 0]
    runs = [[] for _ in every]
    for i, got_run in zip(asked, await go([(i, "ZRANGE", a[i], a[i] + want[i] - 1) for i in asked]), strict=True):
        runs[i] = got_run
    cut = [i for i in asked if len(runs[i]) == want[i] and a[i] + want[i] < ends[i]]
    return await _merged(out, go, runs, cut, a, ends, q, skip, limit, prefix, anchors and not near)


async def _merged(out: Selection, go: Run, runs: list[list[str]], cut: list[int], a: list[int], ends: list[int],
                  q: int, skip: int, limit: int, prefix: str | None, leave_anchor: bool) -> Selection:
    """The k-way merge of the runs fetched from every shard's bound `a`: skip, take `limit`; a shard whose run
    was cut (`cut`) before the last member taken is asked for `q` more until none is."""
    need = skip + limit
    while True:
        merged = sorted(chain.from_iterable(runs))[:need]
        short = cut if len(merged) < need else [i for i in cut if runs[i] and runs[i][-1] < merged[-1]]
        if not short:
            break
        more = await go([(i, "ZRANGE", a[i] + len(runs[i]), a[i] + len(runs[i]) + q - 1) for i in short])
        for i, extra in zip(short, more, strict=True):
            runs[i] += extra
        cut = [i for i in short if len(more[short.index(i)]) == q and a[i] + len(runs[i]) < ends[i]]
    page = merged[skip:need]
    if prefix:
        page = [m for m in page if m.startswith(prefix)]  # the shards may have moved in between
    out.members = page
    offset = sum(a) + skip  # the page's global rank (no prefix: the bounds count from the index's start)
    if leave_anchor and not prefix and offset > ANCHOR_EVERY and page:
        out.writes.append((META, "ZADD", offset, page[0]))
    return out


# --- an in-memory reference (the unit tests; the shape of the replies Redis gives) -----------------------------

def _lex_index(members: Sequence[str], bound: str | bytes, upper: bool) -> int:
    """How many members lie strictly below the lex bound (`-`, `+`, `(x`, `[x`); for an upper bound, how many
    lie at or below it."""
    if isinstance(bound, bytes):  # a prefix's high end: the prefix, then above any text
        bound = bound[:-1].decode() + chr(0x10FFFF)
    if bound == "-":
        return 0
    if bound == "+":
        return len(members)
    inclusive, value = bound[0] == "[", bound[1:]
    if upper:
        return (bisect.bisect_right if inclusive else bisect.bisect_left)(members, value)
    return (bisect.bisect_left if inclusive else bisect.bisect_right)(members, value)


class Memory:
    """Shards as sorted lists and an anchor set, answering the commands `select` sends, round by round."""

    def __init__(self, shards: list[list[str]]) -> None:
        self.shards = [sorted(s) for s in shards]
        self.anchors: dict[str, float] = {}
        self.rounds = 0
        self.before_round: Callable[[], None] | None = None  # e.g. change the index between rounds

    async def run(self, cmds: list[Cmd]) -> list[Any]:
        self.rounds += 1
        if self.before_round is not None:
            self.before_round()
        return [self.one(c) for c in cmds]

    def one(self, cmd: Cmd) -> Any:
        target, name, *args = cmd
        if target == META:
            if name == "ZADD":
                self.anchors[str(args[1])] = float(args[0])
                return 1
            top = float(args[0])
            best = sorted(((s, m) for m, s in self.anchors.items() if s <= top), reverse=True)
            return [best[0][1]] if best else []
        members = self.shards[target]
        if name == "ZCARD":
            return len(members)
        if name == "ZLEXCOUNT":
            return max(0, _lex_index(members, args[1], True) - _lex_index(members, args[0], False))
        if name == "ZRANGE" and "BYLEX" in args:
            low, high = _lex_index(members, args[0], False), _lex_index(members, args[1], True)
            skip, count = int(args[4]), int(args[5])
            return members[low:high][skip:skip + count]
        if name == "ZRANGE":
            start, stop = int(args[0]), int(args[1])
            return members[start:stop + 1] if stop >= start >= 0 else []
        raise ValueError(name)
