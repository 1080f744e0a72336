"""A global index split over the cluster's shards (one per partition), as paging's rounds run it
(adapter/devices/paging.py), with the page hints a process keeps: its copy of the shared anchor set of each
index, and the pages it served (deep pages, and sn-prefix pages in copies of their own), so the page after one,
or the same page again, starts next to it (docs/cluster.md)."""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapter.devices import paging
from adapter.store.cluster_round import Command, cluster_round
from adapter.store.types import AsyncRedis

ANCHOR_COPY_SECONDS = 30.0  # how long a process trusts its copy of an anchor set before reading it again


@dataclass
class _AnchorCopy:
    """A process's copy of one index's anchor set (ranks as scores, ascending): the hints of deep pages."""
    loaded: float
    ranks: list[float]
    members: list[str]

    def below(self, offset: int) -> tuple[str, float] | None:
        at = bisect.bisect_right(self.ranks, offset)
        return (self.members[at - 1], self.ranks[at - 1]) if at else None

    def add(self, rank: float, member: str) -> None:
        at = bisect.bisect_right(self.ranks, rank)
        self.ranks.insert(at, rank)
        self.members.insert(at, member)

    def remember(self, offset: int, members: Sequence[str]) -> None:
        """Keep a page's first member as a hint for pages after it (a UI paging on, or asking again): bounded,
        the copy starts over past COPY_MAX hints (the Redis anchor set is reloaded, a prefix's starts empty)."""
        if not members:
            return
        seen = self.below(offset)
        if seen is not None and seen[1] == offset:
            return
        if len(self.ranks) >= COPY_MAX:
            self.ranks, self.members, self.loaded = [], [], 0.0
        self.add(float(offset), members[0])


COPY_MAX = 1024  # hints in one copy
PREFIXES_MAX = 512  # sn prefixes whose page hints a process keeps (least recently used dropped)
PREFIX_HINT_FROM = 300  # a prefix page starts from a hint only when it saves fetching at least this many members
_anchor_copies: dict[str, _AnchorCopy] = {}
_prefix_copies: OrderedDict[tuple[str, str], _AnchorCopy] = OrderedDict()


def _prefix_copy(index: str, prefix: str) -> _AnchorCopy:
    """The page hints of one sn prefix of one index (ranks counted from the prefix's first member), kept in
    this process only: a prefix's pages are exact from any hint, so a stale one costs only rounds."""
    copy = _prefix_copies.pop((index, prefix), None)
    if copy is None or time.monotonic() - copy.loaded > ANCHOR_COPY_SECONDS:
        copy = _AnchorCopy(time.monotonic(), [], [])
    _prefix_copies[(index, prefix)] = copy
    while len(_prefix_copies) > PREFIXES_MAX:
        _prefix_copies.popitem(last=False)
    return copy


def _scored(reply: Sequence[Any]) -> list[tuple[Any, Any]]:
    """(member, score) pairs of a ZRANGE WITHSCORES reply in either protocol: RESP2 answers a flat list
    (member, score, member, score...), RESP3 (redis-py's default from 8.0 on) a list of pairs."""
    if reply and isinstance(reply[0], list | tuple):
        return [(m, s) for m, s in reply]
    return list(zip(reply[::2], reply[1::2], strict=True))


class ShardedIndex:
    """One global index as its shards' keys (and its anchor set), answering paging's rounds."""

    def __init__(self, r: AsyncRedis, shard_keys: Sequence[str], anchors: str | None = None) -> None:
        self.r = r
        self.keys = list(shard_keys)
        self.anchors = anchors

    def command(self, cmd: paging.Cmd) -> Command:
        target, name, *args = cmd
        key = self.keys[target] if target != paging.META else self.anchors
        assert key is not None
        return key, (name, key, *args)

    async def run(self, cmds: list[paging.Cmd]) -> list[Any]:
        return await cluster_round(self.r, [self.command(c) for c in cmds])

    async def _anchor_copy(self, anchors: str) -> _AnchorCopy:
        copy = _anchor_copies.get(anchors)
        now = time.monotonic()
        if copy is None or now - copy.loaded > ANCHOR_COPY_SECONDS:
            got = (await cluster_round(self.r, [(anchors, ("ZRANGE", anchors, 0, -1, "WITHSCORES"))]))[0]
            pairs = _scored(got)
            copy = _AnchorCopy(now, [float(s) for _, s in pairs], [str(m) for m, _ in pairs])
            _anchor_copies[anchors] = copy
        return copy

    async def page(self, offset: int, limit: int, prefix: str | None = None) -> paging.Selection:
        """The page at `offset`; a deep unfiltered page starts from the nearest anchor of this process's copy
        of the anchor set, and a new anchor it leaves goes into the copy too. Each such page (and each sn-prefix
        page, in a copy of its own) is remembered in the copy, so the page after it starts from it."""
        shards = len(self.keys)
        if self.anchors is not None and prefix:
            copy = _prefix_copy(self.anchors, prefix)
            hint = copy.below(offset)
            if hint is not None and hint[1] < PREFIX_HINT_FROM:
                hint = None
            selection = await paging.select(self.run, shards, offset, limit, prefix, False, hint)
            if offset >= PREFIX_HINT_FROM:
                copy.remember(offset, selection.members)
            return selection
        if self.anchors is None or prefix or offset <= paging.MERGE_MAX:
            return await paging.select(self.run, shards, offset, limit, prefix)
        copy = await self._anchor_copy(self.anchors)
        selection = await paging.select(self.run, shards, offset, limit, None, True, copy.below(offset))
        for _, name, *args in selection.writes:
            if name == "ZADD":
                copy.add(float(args[0]), str(args[1]))
        copy.remember(offset, selection.members)
        return selection
