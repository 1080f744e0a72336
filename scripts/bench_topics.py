"""Benchmark TopicIndex.match against the brute-force loop over `matches`.

Builds 10,000 route filters (100 of them with wildcards), then times per-topic matching for a
mix of topics: exact hits, wildcard hits, misses and `$SYS` topics. Checks both agree.

    .venv/bin/python scripts/bench_topics.py [--filters N] [--wildcards W]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from adapter.protocol.topics import TopicIndex, matches


def make_filters(total: int, wildcards: int, rng: random.Random) -> list[str]:
    suffixes = ["status", "mem", "cpu", "resp/cmd"]
    exact = [f"dma/{i:05d}/{rng.choice(suffixes)}" for i in range(total - wildcards)]
    shapes = ["dma/+/evt{j}", "fleet{j}/#", "dma/{j:05d}/+", "+/cfg{j}/#", "site/{j}/+/temp"]
    wild = [shapes[j % len(shapes)].format(j=j) for j in range(wildcards - 2)] + ["#", "$SYS/#"]
    return exact + wild


def make_topics(filters: list[str], count: int, rng: random.Random) -> list[str]:
    exact = [f for f in filters if "+" not in f and "#" not in f]
    kinds: list[Callable[[], str]] = [
        lambda: rng.choice(exact),
        lambda: f"dma/{rng.randrange(99999):05d}/evt{rng.randrange(100)}",
        lambda: f"fleet{rng.randrange(100)}/a/b/c",
        lambda: f"site/{rng.randrange(100)}/dev{rng.randrange(9)}/temp",
        lambda: f"nowhere/{rng.randrange(10**6)}/x",
        lambda: "$SYS/brokers/emqx@127.0.0.1/uptime",
    ]
    return [rng.choice(kinds)() for _ in range(count)]


def time_per_call(fn: Callable[[str], object], topics: list[str], repeat: int) -> float:
    """Best-of-`repeat` microseconds per call over `topics`."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for topic in topics:
            fn(topic)
        best = min(best, time.perf_counter() - start)
    return best / len(topics) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=10_000)
    parser.add_argument("--wildcards", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(1)
    filters = make_filters(args.filters, args.wildcards, rng)
    pairs = [(f, i) for i, f in enumerate(filters)]

    start = time.perf_counter()
    index = TopicIndex.build(pairs)
    build_ms = (time.perf_counter() - start) * 1e3

    def brute(topic: str) -> frozenset[int]:
        return frozenset(key for f, key in pairs if matches(f, topic))

    topics = make_topics(filters, 20_000, rng)
    sample = topics[:200]
    for topic in sample:
        assert index.match(topic) == brute(topic), topic

    fast = time_per_call(index.match, topics, repeat=5)
    slow = time_per_call(brute, sample, repeat=1)
    only_exact = TopicIndex.build((f, i) for f, i in pairs if "+" not in f and "#" not in f)
    exact_us = time_per_call(only_exact.match, topics, repeat=5)
    print(f"filters: {len(filters)} ({args.wildcards} with wildcards), index pairs: {len(index)}")
    print(f"build:                  {build_ms:9.1f} ms")
    print(f"TopicIndex.match:       {fast:9.2f} us/topic  ({len(topics)} topics, best of 5)")
    print(f"  exact filters only:   {exact_us:9.2f} us/topic")
    print(f"brute force (matches):  {slow:9.1f} us/topic  ({len(sample)} topics)")
    print(f"speed-up:               {slow / fast:9.0f}x")


if __name__ == "__main__":
    main()
