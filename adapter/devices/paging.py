"""Exact offset pages over a global index split into N score-0 sorted sets (the cluster's index shards), without
walking the offset (docs/cluster/plan.md §4). Pure logic: it speaks in rounds of commands and never does I/O, so
the same code runs against Redis (adapter/devices/reads.py sends each round to every primary at once) and against
sorted Python lists in the unit tests (`Memory`).

A command is `(target, name, *args)`: target = a shard number, or `META` for the index's anchor set
(`keys.page_anchors`). Names used: ZCARD, ZLEXCOUNT, ZRANGE (by index and BYLEX), and on `META` ZRANGE BYSCORE
REV, ZREMRANGEBYSCORE and ZADD. Ranks count from the range's start (an sn prefix's first member, else the index's).

`select(run, shards, offset, limit, prefix)`:
1. one round: every shard's ZCARD (or, with an sn prefix, its ZLEXCOUNT of the prefix's range); with a `hint`
   (a member the caller saw at a known rank) every shard's rank at it, else for a deep unfiltered page the
   nearest anchor at or below `offset`; and when the page is expected within MERGE_MAX of where this round
   starts (the range's start or the hint), every shard's run from there (ZRANGE BYLEX LIMIT 0 q): then the page
   needs no other round;
2. an anchor: one round of ZLEXCOUNT(-, (anchor) gives every shard's rank at it, so its exact global rank;
   kept as the bound when that rank is <= offset (the anchor may be stale or even gone: the count is exact);
2b. a deep unfiltered page with no near hint: the first round also fetched every shard's member at the page's
   expected local rank (offset / shards, by index); a few of them (SEEK_QUANTILES of the sorted ones) are
   counted in the round of step 2, and the closest at or below the page is the bound: a cold deep page is
   three rounds (counts, counts at the picks, the merge) instead of the pivots' 8-12;
3. while more than `MERGE_MAX` members remain to skip: a pivot one shard `step` further (ZRANGE by index,
   O(log n); with a prefix, after one round of the counts below it) and every shard's rank at it (one round);
   shards are hash-random, so the pivot's global rank lands ~N·step ± sqrt(N·left) further: aim 3 of those
   short;
4. the k-way merge from the bound: `q` members of every shard (one round), sorted, skip, take `limit`; a shard
   whose run was cut before the last member taken is asked for more after its last member (rare: exactness is
   kept).
A deep page whose bound did not come from a near anchor leaves its first member as a new anchor (`writes`, for
the caller to send with its next round), so the next deep page near it costs rounds 1, 2, 4 only; with a `hint`
any page near it costs what page 1 costs: one round.
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
# which of the shards' members at a cold deep page's expected local rank it counts (quantiles of them, sorted):
# their global ranks spread ~sqrt(shards * offset) around the page; those just below the median bound it closest
SEEK_QUANTILES = (0.3, 0.4, 0.47, 0.53)
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


@dataclass
class _Ask:
    """The first round of one `select` (step 1), and where in its replies each part is (-1: not asked)."""

    cmds: list[Cmd]
    from_hint: bool  # every shard's rank at the hint follows the counts
    meta_at: int = -1  # the nearest anchor at or below the page (META)
    seek_at: int = -1  # every shard's member at the page's expected local rank (step 2b)
    spec_at: int = -1  # the speculative runs, `q0` members of every shard from where the round starts
    q0: int = 0


@dataclass
class _Bound:
    """Where the merge starts: every shard's rank (from the range's start) and their sum, at or below the page;
    `near`: an anchor within ANCHOR_EVERY of the page (it leaves none); `hinted`: the bound is the hint."""

    ranks: list[int]
    rank: int = 0
    near: bool = False
    hinted: bool = False


async def select(run: Run, shards: int, offset: int, limit: int, prefix: str | None = None,
                 anchors: bool = False, hint: tuple[str, float] | None = None) -> Selection:
    """(total, members) of the page at `offset` of the merged shards, optionally only members starting with
    `prefix`; `anchors` uses and feeds the anchor set (unfiltered indexes only). `hint` is an anchor the caller
    already knows (member, its rank when seen, counted from the range's start: its copy of the anchor set, or
    of a prefix's pages): its ranks are asked in the first round instead of looking an anchor up; a stale or
    vanished hint costs nothing but the rounds it fails to save.

    When the page is expected within MERGE_MAX of where the first round starts (the range's start, or the hint),
    that round also fetches every shard's run from there (ZRANGE BYLEX LIMIT 0 q: no offset walked), so the
    page needs no further round unless a run turns out short. Ranks count from the range's start (the prefix's
    first member), so that round needs no count below the prefix; the pivots of a deep page, which fetch by
    rank, ask for it then. The steps are the module's: `_first_round` (1), `_bound` (2, 2b), `_pivots` (3),
    `_merged` (4)."""
    out = Selection(0, [])

    async def go(cmds: list[Cmd]) -> list[Any]:
        out.rounds += 1
        return await run(cmds)

    low, high = ("[" + prefix, prefix_bounds(prefix)[2]) if prefix else ("-", "+")
    ask = _first_round(shards, offset, limit, prefix, low, high, anchors, hint)
    got = await go(ask.cmds)
    sizes = [int(x) for x in got[:shards]]
    out.total = sum(sizes)
    if offset >= out.total or limit <= 0:
        return out
    bound = await _bound(go, ask, got, shards, offset, low)
    leave_anchor = anchors and not bound.near
    if ask.spec_at >= 0 and (bound.hinted or not ask.from_hint) and offset - bound.rank <= MERGE_MAX:
        runs: list[list[str]] = list(got[ask.spec_at:ask.spec_at + shards])  # members as the client decodes them
        cut = [i for i in range(shards) if len(runs[i]) == ask.q0 and bound.ranks[i] + ask.q0 < sizes[i]]
        return await _merged(out, go, runs, cut, bound.ranks, sizes, ask.q0, offset - bound.rank, limit, high,
                             prefix, leave_anchor)
    # deep: pivots and runs by rank, which count from the index's start: every shard's rank of the range's start
    base = [0] * shards
    if prefix:
        base = [int(x) for x in await go([(i, "ZLEXCOUNT", "-", "(" + prefix) for i in range(shards)])]
    a, r = await _pivots(go, bound, sizes, base, offset, low)
    skip = offset - r
    q = _run_length(skip + limit, shards)
    want = [max(0, min(q, sizes[i] - a[i])) for i in range(shards)]
    asked = [i for i in range(shards) if want[i] > 0]
    runs = [[] for _ in range(shards)]
    fetched = await go([(i, "ZRANGE", base[i] + a[i], base[i] + a[i] + want[i] - 1) for i in asked])
    for i, got_run in zip(asked, fetched, strict=True):
        runs[i] = got_run
    cut = [i for i in asked if len(runs[i]) == want[i] and a[i] + want[i] < sizes[i]]
    return await _merged(out, go, runs, cut, a, sizes, q, skip, limit, high, prefix, leave_anchor)


def _first_round(shards: int, offset: int, limit: int, prefix: str | None, low: str, high: str | bytes,
                 anchors: bool, hint: tuple[str, float] | None) -> _Ask:
    """Step 1: every shard's count; the hint's ranks, or the nearest anchor; a cold deep page's seek members; the
    speculative runs when the page is expected within MERGE_MAX of where the round starts."""
    every = range(shards)
    use_anchor = anchors and not prefix and offset > MERGE_MAX
    from_hint = hint is not None and (use_anchor or (bool(prefix) and offset >= hint[1]))
    ask = _Ask([(i, "ZLEXCOUNT", low, high) for i in every] if prefix else [(i, "ZCARD") for i in every], from_hint)
    if hint is not None and from_hint:
        ask.cmds += [(i, "ZLEXCOUNT", low, "(" + hint[0]) for i in every]
    elif use_anchor:
        ask.meta_at = len(ask.cmds)
        ask.cmds.append((META, "ZRANGE", offset, "-inf", "BYSCORE", "REV", "LIMIT", 0, 1))
    # a deep unfiltered page with no near hint also asks every shard for its member at the page's expected local
    # rank: some of them, counted in the next round, bound the page closely (SEEK_QUANTILES)
    if use_anchor and (hint is None or offset - hint[1] > MERGE_MAX) and limit > 0:
        ask.seek_at = len(ask.cmds)
        ask.cmds += [(i, "ZRANGE", offset // shards, offset // shards) for i in every]
    # the speculative runs: from the lex bound the page is expected to start near
    start: str | None = None
    expect = offset
    if hint is not None and from_hint:
        start, expect = "[" + hint[0], offset - int(hint[1])
    elif not use_anchor:
        start = low
    ask.q0 = _run_length(max(0, expect) + limit, shards)  # (a hint above the page: no speculative runs)
    if start is not None and 0 <= expect <= MERGE_MAX and limit > 0:
        ask.spec_at = len(ask.cmds)
        ask.cmds += [(i, "ZRANGE", start, high, "BYLEX", "LIMIT", 0, ask.q0) for i in every]
    return ask


async def _bound(go: Run, ask: _Ask, got: list[Any], shards: int, offset: int, low: str) -> _Bound:
    """Steps 2 and 2b: the closest bound at or below the page, from the hint's ranks (already in `got`), or from
    one round of every shard's rank at the anchor and at each seek pick; no bound: the range's start."""
    every = range(shards)
    picks: list[str] = []
    if ask.seek_at >= 0:
        found = sorted(str(c[0]) for c in got[ask.seek_at:ask.seek_at + shards] if c)
        picks = sorted({found[int(q * len(found))] for q in SEEK_QUANTILES} if found else set())
    at: list[int] | None = None
    anchored: int | None = None  # the rank of the hint or anchor, when at or below the page
    if ask.from_hint:
        at = [int(x) for x in got[shards:2 * shards]]
        anchored = sum(at)
    elif (ask.meta_at >= 0 and got[ask.meta_at]) or picks:
        anchor = [str(got[ask.meta_at][0])] if ask.meta_at >= 0 and got[ask.meta_at] else []
        counted = await go([(i, "ZLEXCOUNT", low, "(" + m) for m in anchor + picks for i in every])
        for k in range(len(anchor) + len(picks)):
            ranks = [int(x) for x in counted[k * shards:(k + 1) * shards]]
            if sum(ranks) <= offset and (at is None or sum(ranks) > sum(at)):
                at = ranks
            if k < len(anchor) and sum(ranks) <= offset:
                anchored = sum(ranks)
    if at is None or sum(at) > offset:
        return _Bound([0] * shards)
    return _Bound(at, sum(at), anchored is not None and offset - anchored <= ANCHOR_EVERY, ask.from_hint)


async def _pivots(go: Run, bound: _Bound, sizes: list[int], base: list[int], offset: int,
                  low: str) -> tuple[list[int], int]:
    """Step 3: while more than MERGE_MAX members remain to skip, a pivot one shard `step` further and every
    shard's rank at it; answers every shard's rank and their sum where the merge starts."""
    shards = len(sizes)
    a, r = bound.ranks, bound.rank
    step = _step(offset - r, shards)
    while offset - r > MERGE_MAX and step > 0:
        j = max(range(shards), key=lambda i: sizes[i] - a[i])
        index = base[j] + min(a[j] + step, sizes[j] - 1)
        pivot = (await go([(j, "ZRANGE", index, index)]))[0]
        if not pivot:
            break  # the shard shrank in between: merge from where we are
        at = [int(x) for x in await go([(i, "ZLEXCOUNT", low, "(" + str(pivot[0])) for i in range(shards)])]
        rank = sum(at)
        if r <= rank <= offset:
            a, r = at, rank
            step = _step(offset - r, shards)
        else:
            step //= 2
    return a, r


async def _merged(out: Selection, go: Run, runs: list[list[str]], cut: list[int], a: list[int], sizes: list[int],
                  q: int, skip: int, limit: int, high: str | bytes, prefix: str | None,
                  leave_anchor: bool) -> Selection:
    """The k-way merge of the runs fetched from every shard's rank `a`: skip, take `limit`; a shard whose run
    was cut (`cut`) before the last member taken is asked for `q` more after its last member, until none is."""
    need = skip + limit
    while True:
        merged = sorted(chain.from_iterable(runs))[:need]
        short = cut if len(merged) < need else [i for i in cut if runs[i] and runs[i][-1] < merged[-1]]
        if not short:
            break
        more = await go([(i, "ZRANGE", "(" + runs[i][-1], high, "BYLEX", "LIMIT", 0, q) for i in short])
        for i, extra in zip(short, more, strict=True):
            runs[i] += extra
        cut = [i for i, extra in zip(short, more, strict=True) if len(extra) == q and a[i] + len(runs[i]) < sizes[i]]
    page = merged[skip:need]
    if prefix:
        page = [m for m in page if m.startswith(prefix)]  # the shards may have moved in between
    out.members = page
    offset = sum(a) + skip  # the page's rank (no prefix: counted from the index's start)
    if leave_anchor and not prefix and offset > ANCHOR_EVERY and page:
        # anchors within half a spacing of the new one go (stale ranks of a changed index): at most one per
        # ANCHOR_EVERY / 2 ranks, so the set is bounded by the index's size, however long it lives
        out.writes.append((META, "ZREMRANGEBYSCORE", offset - ANCHOR_EVERY // 2, offset + ANCHOR_EVERY // 2))
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
            if name == "ZREMRANGEBYSCORE":
                low, high = float(args[0]), float(args[1])
                gone = [m for m, score in self.anchors.items() if low <= score <= high]
                for m in gone:
                    del self.anchors[m]
                return len(gone)
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
