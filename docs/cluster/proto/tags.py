"""Prototype: the partition hash tags of the cluster plan (study for issue 15; not project code).

partition(sn) = sha1(sn)[:8] mod P, as today (adapter/delivery, fanout.lua). Partition n's keys carry the
tag TAGS[n]; TAGS is chosen so that the N tags' slots are spread evenly over 0..16383 (tag n's slot lies in
the middle half of the n-th of N equal slot ranges). A cluster created with equal slot ranges per primary
(redis-cli --cluster create, or rebalance) then holds N/M partitions on each of M primaries, exactly when
M divides N. Naive tags `{p<n>}` do not: for N = 48 over 3 primaries they land 12/16/20 (±25%).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from redis.crc import key_slot

SLOTS = 16384


def partition(sn: str, partitions: int) -> int:
    return int(hashlib.sha1(sn.encode()).hexdigest()[:8], 16) % partitions


@lru_cache(maxsize=8)
def tags(partitions: int) -> tuple[str, ...]:
    out = []
    for n in range(partitions):
        lo, hi = n * SLOTS / partitions, (n + 1) * SLOTS / partitions
        q = (hi - lo) / 4
        k = 0
        while True:  # p<n> when it already fits, else the first p<n>.<k> that does (about 2N tries each; a pinned table in keys.py would do as well)
            tag = f"p{n}" if k == 0 else f"p{n}.{k}"
            if lo + q <= key_slot(tag.encode()) < hi - q:
                break
            k += 1
        out.append(tag)
    return tuple(out)


def tag_of(sn: str, partitions: int) -> str:
    return tags(partitions)[partition(sn, partitions)]
