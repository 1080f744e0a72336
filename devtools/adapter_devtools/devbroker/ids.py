"""Message ids in EMQX's format: 128 bits, `<<Ts:64, Node:48, Seq:16>>`, as 32 upper-case hex digits.

EMQX (`emqx_guid`) packs the microsecond timestamp, node/process bits and a sequence number; ids from
one node sort by time. `format_guid` is the pure layout; `GuidGen` feeds it the clock.
"""

from __future__ import annotations

import hashlib
import time


def format_guid(ts_us: int, node_bits: int, seq: int) -> str:
    return f"{ts_us & (2**64 - 1):016X}{node_bits & (2**48 - 1):012X}{seq & 0xFFFF:04X}"


def node_bits(node: str) -> int:
    """48 stable bits derived from the node name."""
    return int.from_bytes(hashlib.sha256(node.encode()).digest()[:6], "big")


class GuidGen:
    """Unique, time-ordered ids for one node."""

    def __init__(self, node: str) -> None:
        self._node = node_bits(node)
        self._last_us = 0
        self._seq = 0

    def next(self) -> str:
        now_us = max(time.time_ns() // 1000, self._last_us)
        if now_us == self._last_us:
            self._seq += 1
            if self._seq > 0xFFFF:
                now_us, self._seq = now_us + 1, 0
        else:
            self._seq = 0
        self._last_us = now_us
        return format_guid(now_us, self._node, self._seq)
