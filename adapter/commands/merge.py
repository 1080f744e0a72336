"""One page of a command listing that Redis Cluster splits into one sorted set per partition (docs/commands.md
"Listing on a cluster"): the members of every shard merged by score, highest first, at an exact offset.

Scores are ordinals, distinct across partitions (an id carries its partition). Without walking the offset:
1. `above` = how many members score higher than a bound `hi` (at first +inf); while the offset is well past
   it, take a pivot from the shard with the most members left, at about `left / P` past that shard's bound
   (ZREVRANGE by index), and count every shard's members above the pivot (ZCOUNT, one pipelined round);
   keep the pivot as the new bound when those are no more than the offset, else halve the step.
   (A first page, offset within ~2P, needs no pivot: its totals and runs come in one round.)
2. from the bound, each shard gives its next `q` members (q about 2 × (what is left + limit) / P); merged,
   skip what is left, take `limit`. A shard that gave all `q` while its last one sorts before the last one
   taken may hold more members in between: it is asked for them (rare), so the page is exact.
Each round is one pipeline (on a cluster: to every primary at once).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from itertools import islice
from typing import Any

from adapter.store.types import as_text

SLACK_PER_SHARD = 2


def _step(left: int, shards: int) -> int:
    """How far into one shard the next pivot goes: about its share of what is left, aimed a bit short."""
    return max(1, int(left - 3 * left**0.5) // shards)


async def _each(client: Any, commands: Sequence[tuple[str, ...]]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for name, *args in commands:
            pipe.execute_command(name, *args)
        return list(await pipe.execute())


async def page(client: Any, shards: Sequence[str], offset: int, limit: int) -> tuple[int, list[str]]:
    """The total and the members at `offset` .. `offset + limit - 1` of the merged shards, highest score
    first (members as text)."""
    n = len(shards)
    if offset <= SLACK_PER_SHARD * n:  # a first page: no pivot needed, the totals and the runs in one round
        q = _q(offset, limit, n)
        replies = await _each(client, [("ZCARD", k) for k in shards] +
                              [("ZREVRANGE", k, "0", str(q - 1), "WITHSCORES") for k in shards])
        ends = [int(x) for x in replies[:n]]
        if limit <= 0:
            return sum(ends), []
        return sum(ends), await _merge(client, shards, [0] * n, ends, offset, limit,
                                       [_pairs(r) for r in replies[n:]])
    ends = [int(x) for x in await _each(client, [("ZCARD", k) for k in shards])]
    total = sum(ends)
    if offset >= total or limit <= 0:
        return total, []
    rank, above = [0] * n, 0  # rank[i]: shard i's members above the bound; `above`: their sum
    step = _step(offset, n)
    while offset - above > SLACK_PER_SHARD * n and step > 0:
        j = max(range(n), key=lambda i: ends[i] - rank[i])
        at = min(rank[j] + step, ends[j] - 1)
        got = _pairs((await _each(client, [("ZREVRANGE", shards[j], str(at), str(at), "WITHSCORES")]))[0])
        if not got:
            break  # the shard shrank meanwhile: merge from here
        pivot = got[0][0]
        counted = [int(x) for x in await _each(client, [("ZCOUNT", k, f"({pivot}", "+inf") for k in shards])]
        if sum(counted) <= offset:
            rank, above = counted, sum(counted)
            step = _step(offset - above, n)
        else:
            step //= 2
    return total, await _merge(client, shards, rank, ends, offset - above, limit)


def _q(skip: int, limit: int, shards: int) -> int:
    """How many members each shard gives to the merge at first: twice its share of what is needed, and 8."""
    return -(-2 * (skip + limit) // shards) + 8


async def _merge(client: Any, shards: Sequence[str], rank: list[int], ends: list[int], skip: int,
                 limit: int, runs: list[list[tuple[float, str]]] | None = None) -> list[str]:
    n = len(shards)
    q = _q(skip, limit, n)
    if runs is None:
        runs = [_pairs(r) for r in await _each(client, [("ZREVRANGE", k, str(rank[i]), str(rank[i] + q - 1),
                                                         "WITHSCORES") for i, k in enumerate(shards)])]
    want = skip + limit
    while True:
        merged = list(islice(heapq.merge(*runs, key=lambda m: -m[0]), want))
        last = merged[-1][0] if len(merged) == want else float("-inf")
        short = [i for i, run in enumerate(runs)
                 if run and len(run) % q == 0 and rank[i] + len(run) < ends[i] and run[-1][0] > last]
        if not short:
            return [m for _, m in merged[skip:want]]
        more = await _each(client, [("ZREVRANGE", shards[i], str(rank[i] + len(runs[i])),
                                     str(rank[i] + len(runs[i]) + q - 1), "WITHSCORES") for i in short])
        for i, got in zip(short, more, strict=True):
            extra = _pairs(got)
            runs[i] += extra
            if len(extra) < q:  # the shard has no more
                ends[i] = rank[i] + len(runs[i])


def _pairs(reply: Sequence[Any]) -> list[tuple[float, str]]:
    """ZREVRANGE … WITHSCORES as (score, member): a flat list, or pairs (RESP3 / redis-py's parsing)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(_score(s), as_text(m)) for m, s in reply]
    return [(_score(reply[i + 1]), as_text(reply[i])) for i in range(0, len(reply), 2)]


def _score(value: Any) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)


