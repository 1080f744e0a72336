"""Prototype: page P of limit L over a lexical index sharded into N score-0 sorted sets (one per partition,
each in its partition's slot), filtered by an sn prefix, by OFFSET, without walking the offset.

select(offset):  the first member m with  rank(m) >= offset, rank = Σ_i count of shard i below m in range.
  base_i = ZLEXCOUNT(shard_i, -, (lo)      (members of shard i before the range; also its range total)
  bound = lo, r = 0 (members in range before bound), a_i = base_i (shard i's absolute rank at bound)
  while offset - r > SLACK:
      step = (left - 3 sqrt(left)) // N   (shards are hash-random: each holds ~1/N of any range, ± sqrt)
      pivot = ZRANGE shard_j a_j+step a_j+step       (by index: O(log n); j = the shard with most left)
      a_i' = ZLEXCOUNT(shard_i, -, (pivot) for all i (one round, every node at once)
      r'  = Σ (a_i' - base_i);  keep the pivot as the new bound when r' <= offset, else halve the step
  then the k-way merge from the bound: shard i gives ZRANGE by index a_i .. a_i + q - 1 with
  q = ceil(2 (offset - r + L) / N) + 8; merged, skip offset - r, take L. A shard that returned all q members
  while its last one sorts before the last member taken is asked for more (rare: exactness is kept).
Round trips: 1 (bases, totals) + ~2 per refinement round (3-4 rounds at 1M) + 1 (merge) + 1 (hashes);
each round trip goes to every primary at once (the ClusterBatcher groups the commands by node).
Usage: python merged_paging.py [devices]   (loads the index into the cluster on 7101-7103, then times pages)
"""

from __future__ import annotations

import asyncio
import heapq
import random
import statistics
import sys
import time

import redis
import redis.asyncio.cluster as acluster
from redis.crc import key_slot

from cluster_batcher import ClusterBatcher
from tags import partition, tags

P = 48
PREFIX = "page"
SLACK = 2 * P


def bulk(v: str | bytes | int) -> bytes:
    b = v if isinstance(v, bytes) else str(v).encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def pack(*args: str | bytes | int) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


def shard_key(n: int, online: bool | None) -> str:
    kind = "devices" if online is None else ("devices:online" if online else "devices:offline")
    return f"{PREFIX}:{kind}:{{{tags(P)[n]}}}"


def client_key(sn: str) -> str:
    return f"{PREFIX}:client:{{{tags(P)[partition(sn, P)]}}}:{sn}"


def _step(left: int) -> int:
    """How far into one shard to take the next pivot: the pivot's global rank lands ~N·step ± sqrt(left)
    further, so aim 3 sqrt(left) short of it: the next round is left with ~3 sqrt(left) (1M -> 3,000 -> 160)."""
    return max(1, int(left - 3 * left ** 0.5) // P)


class Index:
    def __init__(self, batcher: ClusterBatcher, online: bool | None) -> None:
        self.b = batcher
        self.keys = [shard_key(n, online) for n in range(P)]
        self.slots = [key_slot(k.encode()) for k in self.keys]
        self.rounds = 0

    async def each(self, cmds: list[bytes]) -> list:
        """One command per shard, all shards at once (one round trip to every primary, in parallel)."""
        self.rounds += 1
        return [r[0] for r in await asyncio.gather(*(self.b.submit([c], s) for c, s in zip(cmds, self.slots)))]

    async def page(self, offset: int, limit: int, prefix: str = "") -> tuple[int, list[str]]:
        lo = b"[" + prefix.encode() if prefix else b"-"
        below = b"(" + prefix.encode() if prefix else b"-"
        hi = b"[" + prefix.encode() + b"\xff" if prefix else b"+"
        got = await self.each([pack("ZLEXCOUNT", k, "-", below) if prefix else pack("ZCARD", k)
                               for k in self.keys] + [])
        if prefix:
            base = [int(x) for x in got]
            ends = [int(x) for x in await self.each([pack("ZLEXCOUNT", k, "-", hi) for k in self.keys])]
        else:
            base, ends = [0] * P, [int(x) for x in got]
        total = sum(e - b for b, e in zip(base, ends))
        if offset >= total:
            return total, []
        a, r = list(base), 0
        step = _step(offset - r)
        while offset - r > SLACK and step > 0:
            j = max(range(P), key=lambda i: ends[i] - a[i])
            idx = min(a[j] + step, ends[j] - 1)
            pivot = (await self.b.submit([pack("ZRANGE", self.keys[j], idx, idx)], self.slots[j]))[0][0]
            self.rounds += 1
            na = [int(x) for x in await self.each([pack("ZLEXCOUNT", k, "-", b"(" + pivot) for k in self.keys])]
            nr = sum(x - b for x, b in zip(na, base))
            if nr <= offset:
                a, r = na, nr
                step = _step(offset - r)
            else:
                step //= 2
        skip = offset - r
        q = -(-2 * (skip + limit) // P) + 8
        runs = await self.each([pack("ZRANGE", k, a[i], min(a[i] + q, ends[i]) - 1)
                                for i, k in enumerate(self.keys)])
        while True:
            merged = list(heapq.merge(*runs))[:skip + limit]
            last = merged[-1] if merged else b""
            short = [i for i, run in enumerate(runs)
                     if len(run) == q and a[i] + q < ends[i] and run[-1] < last] if len(merged) == skip + limit \
                else [i for i, run in enumerate(runs) if len(run) == q and a[i] + q < ends[i]]
            if not short:
                return total, [m.decode() for m in merged[skip:skip + limit]]
            for i in short:  # rare: this shard may hold more members before `last`
                more = (await self.b.submit([pack("ZRANGE", self.keys[i], a[i] + len(runs[i]),
                                                  a[i] + 2 * len(runs[i]) - 1)], self.slots[i]))[0]
                runs[i] = runs[i] + more
            q = max(len(r) for r in runs)


async def hashes(b: ClusterBatcher, sns: list[str]) -> list:
    return [r[0] for r in await asyncio.gather(*(b.submit([pack("HMGET", client_key(s), "online", "seen")],
                                                          key_slot(client_key(s).encode())) for s in sns))]


async def load(b: ClusterBatcher, n: int) -> tuple[list[str], list[str]]:
    sns = sorted({f"SN{random.randrange(10**9):09d}" for _ in range(n)})
    online = [s for s in sns if random.random() < 0.6]
    on = set(online)
    groups: dict[tuple[int, bool | None], list[str]] = {}
    for s in sns:
        p = partition(s, P)
        groups.setdefault((p, None), []).append(s)
        groups.setdefault((p, s in on), []).append(s)
    cmds = []
    for (p, flag), members in groups.items():
        k = shard_key(p, flag)
        for i in range(0, len(members), 1000):
            cmds.append((pack("ZADD", k, *[x for m in members[i:i + 1000] for x in ("0", m)]), key_slot(k.encode())))
    for s in sns:
        ck = client_key(s)
        cmds.append((pack("HSET", ck, "online", "1" if s in on else "0", "seen", "0"), key_slot(ck.encode())))
    for i in range(0, len(cmds), 2000):
        await asyncio.gather(*(b.submit([c], slot) for c, slot in cmds[i:i + 2000]))
    return sns, online


async def main(n: int) -> None:
    for p in (7101, 7102, 7103):
        redis.Redis(port=p).flushall()
    cluster = acluster.RedisCluster(host="127.0.0.1", port=7101)
    await cluster.initialize()
    b = ClusterBatcher(cluster)
    t0 = time.perf_counter()
    sns, online = await load(b, n)
    print(f"loaded {len(sns)} devices into {P} shards in {time.perf_counter() - t0:.1f}s")
    cases = []
    for name, idx, ref in (("all", Index(b, None), sns), ("online", Index(b, True), online)):
        for label, offset in (("page 1", 0), ("middle", len(ref) // 2), ("last", len(ref) - 100)):
            cases.append((f"{name} {label}", idx, ref, offset, ""))
        pre = "SN12"
        pref = [s for s in ref if s.startswith(pre)]
        cases.append((f"{name} prefix {pre} middle ({len(pref)})", idx, pref, len(pref) // 2, pre))
    for label, idx, ref, offset, pre in cases:
        times, rounds = [], []
        for _ in range(25):
            jitter = random.randrange(0, 1000) if offset > 1000 else 0
            o = max(0, min(offset + jitter - 500 if jitter else offset, len(ref) - 100))
            idx.rounds = 0
            t = time.perf_counter()
            total, members = await idx.page(o, 100, pre)
            rows = await hashes(b, members)
            times.append((time.perf_counter() - t) * 1000)
            rounds.append(idx.rounds + 1)
            assert total == len(ref), (total, len(ref))
            assert members == ref[o:o + 100], (label, o)
            assert len(rows) == len(members)
        print(f"  {label:34s} p50 {statistics.median(times):6.2f} ms  max {max(times):6.2f} ms"
              f"  round trips p50 {statistics.median(rounds):.0f}")
    print("OK: every page equal to the sorted reference")
    await cluster.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000))
