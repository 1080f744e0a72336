"""The hash slot of a key, remembered: a page's rounds name the same few hundred index-shard keys again and
again, so their CRC16 (redis.crc.key_slot) is computed once; other keys (a page's device hashes) are
remembered until the table is full, then it starts over (bounded memory)."""

from __future__ import annotations

from redis.crc import key_slot

_known: dict[str, int] = {}
_MAX = 50_000


def slot(key: str) -> int:
    """Redis Cluster's slot of `key` (its hash tag's, when it has one)."""
    hit = _known.get(key)
    if hit is None:
        hit = key_slot(key.encode())
        if len(_known) >= _MAX:
            _known.clear()
        _known[key] = hit
    return hit
