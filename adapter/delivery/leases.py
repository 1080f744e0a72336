"""Which pump serves which partition of the delivery streams: leases in Redis, and this pump's view of its own
(docs/delivery.md "How it runs", docs/reliability.md).

A pump heartbeats in the pumps set on every tick; pumps seen within one lease time are live, and each takes a fair
share of the partitions (`share`). A lease is a key holding the pump's id with a TTL, renewed on every tick. A pump
trusts a lease of its own only until one lease time after the start of the last renewal that succeeded (`Lease`),
so a pump cut off from Redis (or paused) stops sending before another pump can take the partition over; Redis's
TTL runs from the renewal's arrival, which is later.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from adapter.store.scripts import Script

# 1: ours (taken, or ours already and renewed), 0: another's
ACQUIRE = Script("""-- KEYS: lease
-- ARGV: pump, lease_ms
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) or redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
""", "leases.ACQUIRE")
# the pumps set; forget pumps silent for `forget_ms`; answers how many were seen within `live_ms`.
# One key, one call (no pipeline: a cluster pipeline's retry closes the client's every connection).
HEARTBEAT = Script("""-- KEYS: pumps
-- ARGV: pump, now, forget_ms, live_ms
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
return redis.call('ZCOUNT', KEYS[1], tonumber(ARGV[2]) - tonumber(ARGV[4]), '+inf')
""", "leases.HEARTBEAT")
RENEW = Script("-- KEYS: lease\n-- ARGV: pump, lease_ms\n"
               "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
               "return 0", "leases.RENEW")
RELEASE = Script("-- KEYS: lease\n-- ARGV: pump\n"
                 "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                 "leases.RELEASE")


class LeaseInDoubt(Exception):
    """A partition's lease has not been renewed for a lease time (Redis unreachable, or this process paused): the
    pump sends nothing on it until a renewal succeeds (or another pump has it)."""


def share(partitions: int, live: int) -> int:
    """How many partitions one of `live` pumps takes."""
    return math.ceil(partitions / max(1, live))


@dataclass
class Lease:
    """This pump's lease of one partition, as far as it may trust it without asking Redis."""

    lease_s: float
    valid_until: float = 0.0  # monotonic

    def renewed(self, asked_at: float) -> None:
        """A renewal (or the acquisition) sent at `asked_at` (monotonic) succeeded."""
        self.valid_until = max(self.valid_until, asked_at + self.lease_s)

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until
