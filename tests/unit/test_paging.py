"""The merged paging of sharded indexes (adapter/devices/paging.py) against a sorted reference: every page, the
filters' shape (any shard set), sn prefixes, anchors (fresh, stale, gone), and changes between rounds."""

from __future__ import annotations

import random

import pytest

from adapter.devices import paging
from adapter.store.keys import partition_of

SHARDS = 48


def sharded(members: list[str], shards: int = SHARDS) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(shards)]
    for m in members:
        out[partition_of(m.partition("/")[0], shards)].append(m)
    return out


def fleet(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return sorted({f"SN{rng.randrange(16**7):07X}" for _ in range(n)})


async def page(store: paging.Memory, offset: int, limit: int, prefix: str | None = None,
               anchors: bool = False) -> paging.Selection:
    return await paging.select(store.run, len(store.shards), offset, limit, prefix, anchors)


async def test_every_page_equals_the_sorted_reference() -> None:
    ref = fleet(3000)
    store = paging.Memory(sharded(ref))
    for limit in (1, 7, 100):
        for offset in range(0, len(ref) + limit, limit):
            got = await page(store, offset, limit)
            assert got.total == len(ref)
            assert got.members == ref[offset:offset + limit], (offset, limit)


@pytest.mark.parametrize("anchors", [False, True])
async def test_deep_pages_of_a_large_index_are_exact(anchors: bool) -> None:
    ref = fleet(60_000)
    store = paging.Memory(sharded(ref))
    rng = random.Random(2)
    edges = [0, paging.MERGE_MAX - 1, paging.MERGE_MAX + 1, 30_000, len(ref) - 100, len(ref) - 1]
    for offset in [*edges, *rng.sample(range(len(ref)), 40)]:
        got = await page(store, offset, 100, anchors=anchors)
        assert got.members == ref[offset:offset + 100], offset
        for cmd in got.writes:
            await store.run([cmd])
    assert (await page(store, len(ref), 100)).members == []
    assert (await page(store, len(ref) + 5000, 100)).total == len(ref)


async def test_prefix_pages_are_exact() -> None:
    ref = fleet(20_000)
    store = paging.Memory(sharded(ref))
    for prefix in ("SN0", "SN1A", "SNFFF", "SN0000000", "nothing", "SN"):
        want = [m for m in ref if m.startswith(prefix)]
        for offset in sorted({0, 50, len(want) // 2, max(0, len(want) - 30), len(want)}):
            got = await page(store, offset, 100, prefix)
            assert got.total == len(want)
            assert got.members == want[offset:offset + 100], (prefix, offset)


async def test_uneven_and_empty_shards() -> None:
    ref = fleet(5000)
    shards: list[list[str]] = [[] for _ in range(SHARDS)]
    for i, m in enumerate(ref):
        shards[0 if i % 3 else (i % 7)].append(m)  # two thirds in one shard, many shards empty
    store = paging.Memory(shards)
    for offset in (0, 100, 2500, 4000, 4999):
        assert (await page(store, offset, 100)).members == ref[offset:offset + 100]
    assert (await page(paging.Memory([[] for _ in range(SHARDS)]), 0, 100)).members == []


async def test_a_deep_page_leaves_an_anchor_and_the_next_one_uses_it() -> None:
    ref = fleet(200_000)
    store = paging.Memory(sharded(ref))
    cold = await page(store, 100_000, 100, anchors=True)
    assert cold.members == ref[100_000:100_100]
    assert cold.writes == [(paging.META, "ZREMRANGEBYSCORE", 99_500, 100_500),
                           (paging.META, "ZADD", 100_000, ref[100_000])]
    await store.run(cold.writes)
    warm = await page(store, 100_500, 100, anchors=True)
    assert warm.members == ref[100_500:100_600]
    assert warm.rounds == 3 and warm.writes == []  # counts + anchor lookup, the anchor's rank, the merge


async def test_a_cold_deep_page_is_bounded_by_the_shards_members_at_its_expected_rank() -> None:
    ref = fleet(300_000)
    store = paging.Memory(sharded(ref))
    rng = random.Random(3)
    rounds = []
    for offset in rng.sample(range(paging.MERGE_MAX + 1, len(ref) - 100), 60):
        store.anchors.clear()
        got = await page(store, offset, 100, anchors=True)
        assert got.members == ref[offset:offset + 100], offset
        assert got.writes  # no anchor was near: it leaves one
        rounds.append(got.rounds)
    # counts + the shards' members at the expected rank, the picks' ranks, the merge (pivots only when unlucky)
    assert sorted(rounds)[len(rounds) // 2] == 3 and max(rounds) <= 6, rounds


async def test_stale_and_vanished_anchors_still_give_exact_pages() -> None:
    ref = fleet(50_000)
    store = paging.Memory(sharded(ref))
    store.anchors = {ref[20_000]: 20_000, "SN0000000-gone": 25_000, ref[40_000]: 29_000}  # stale ranks
    for offset in (20_100, 25_000, 25_900, 29_000, 30_500, 41_000):
        assert (await page(store, offset, 100, anchors=True)).members == ref[offset:offset + 100], offset


async def test_changes_between_rounds_never_fail_and_stay_sorted() -> None:
    ref = fleet(20_000)
    store = paging.Memory(sharded(ref))
    rng = random.Random(3)

    def churn() -> None:
        for _ in range(20):
            shard = store.shards[rng.randrange(SHARDS)]
            if shard and rng.random() < 0.5:
                shard.pop(rng.randrange(len(shard)))
            else:
                shard.append(f"SN{rng.randrange(16**7):07X}")
                shard.sort()

    store.before_round = churn
    for offset in (0, 5000, 10_000, 19_000):
        got = (await page(store, offset, 100)).members
        assert got == sorted(got) and len(set(got)) == len(got)
        assert 0 < len(got) <= 100
    store.before_round = None
    now = sorted(m for s in store.shards for m in s)
    assert (await page(store, 10_000, 100)).members == now[10_000:10_100]


async def test_pivots_keep_the_rounds_few() -> None:
    ref = fleet(200_000)
    store = paging.Memory(sharded(ref))
    assert (await page(store, 0, 100)).rounds == 1  # counts and runs in one round
    assert (await page(store, 2_000, 100, "SN")).rounds == 1
    assert (await page(store, 100_000, 100)).rounds <= 10


async def test_a_hint_saves_the_anchor_round_and_a_bad_hint_stays_exact() -> None:
    ref = fleet(100_000)
    store = paging.Memory(sharded(ref))

    async def hinted(offset: int, hint: str, rank: float) -> paging.Selection:
        return await paging.select(store.run, SHARDS, offset, 100, None, True, (hint, rank))

    got = await hinted(50_300, ref[50_000], 50_000)
    assert got.members == ref[50_300:50_400] and got.rounds == 1 and got.writes == []  # counts and runs at once
    got = await hinted(50_300, ref[50_000], 49_000)  # a stale rank: a merge round more, still exact
    assert got.members == ref[50_300:50_400] and got.rounds <= 2
    for offset, hint, rank in ((50_300, ref[60_000], 50_000), (50_300, ref[10], 50_000), (70_000, "SN0-gone", 69_000),
                               (20_000, "~", 19_000), (40_000, ref[39_500], 39_500), (40_000, ref[41_000], 39_900)):
        assert (await hinted(offset, hint, rank)).members == ref[offset:offset + 100], (offset, hint)


async def test_a_prefix_hint_makes_a_deep_prefix_page_one_round_and_any_hint_stays_exact() -> None:
    ref = fleet(200_000)
    store = paging.Memory(sharded(ref))
    prefix = "SN1"
    want = [m for m in ref if m.startswith(prefix)]  # ~12,500: deep pages beyond MERGE_MAX

    async def hinted(offset: int, hint: tuple[str, float] | None) -> paging.Selection:
        return await paging.select(store.run, SHARDS, offset, 100, prefix, False, hint)

    cold = await hinted(10_000, None)
    assert cold.members == want[10_000:10_100] and cold.rounds > 2  # the base counts, pivots, the merge
    warm = await hinted(10_100, (want[10_000], 10_000))  # the page after a remembered one
    assert warm.members == want[10_100:10_200] and warm.rounds == 1 and warm.total == len(want)
    rng = random.Random(4)
    bad = [(want[500], 400.0), (want[9_000], 9_500.0), ("SN1-gone", 3_000.0), (want[-1], 0.0), (prefix, 50.0),
           (want[7_000], 7_000.0)]
    for offset in [0, 99, 3_000, 7_050, 9_000, len(want) - 1, len(want), *rng.sample(range(len(want)), 20)]:
        for hint in bad:
            got = await hinted(offset, hint)
            assert got.total == len(want)
            assert got.members == want[offset:offset + 100], (offset, hint)


async def test_the_anchor_set_stays_bounded_by_the_index_size_as_ranks_go_stale() -> None:
    ref = fleet(40_000)
    store = paging.Memory(sharded(ref))
    rng = random.Random(9)
    for round_ in range(8):  # the index shrinks and grows between the visits: earlier anchors' ranks go stale
        members = sorted(m for shard in store.shards for m in shard)
        for offset in rng.sample(range(4_000, len(members) - 100), 60):
            got = await page(store, offset, 100, anchors=True)
            assert got.members == members[offset:offset + 100]
            await store.run(got.writes)
        drop = set(rng.sample(members, 1_500)) if round_ % 2 == 0 else set()
        add = [f"SN{rng.randrange(16**7):07X}x" for _ in range(1_500)] if round_ % 2 else []
        store.shards = sharded(sorted((set(members) - drop) | set(add)))
    total = sum(len(s) for s in store.shards)
    assert 0 < len(store.anchors) <= total // (paging.ANCHOR_EVERY // 2) + 1
