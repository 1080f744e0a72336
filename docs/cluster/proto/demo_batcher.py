"""Run the ClusterBatcher against a real 3-primary cluster (ports 7101-7103) and show that it works:
single-slot device calls in shared batches, NOSCRIPT on one node, and a live slot migration (MOVED/ASK)
in the middle of the traffic, with nothing lost. Usage: python demo_batcher.py [events]"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
import time

import redis
import redis.asyncio.cluster as acluster
from redis.crc import key_slot

from cluster_batcher import ClusterBatcher
from tags import partition, tags

P = 48
PREFIX = "study"
# a miniature device.lua: the client hash, the index shard, the online shard, the stream, and the enabled
# callbacks replica, all of the device's partition; the Lua builds NO key.
DEVICE = """
local new = redis.call('HSETNX', KEYS[1], 'device', '1')
redis.call('HSET', KEYS[1], 'online', ARGV[2], 'seen', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[2] == '1' then redis.call('ZADD', KEYS[3], 0, ARGV[1]) else redis.call('ZREM', KEYS[3], ARGV[1]) end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  redis.call('XADD', KEYS[4], '*', 't', 'callback:' .. id, 'k', ARGV[1], 'b', ARGV[3])
end
return new
"""


class Script:
    def __init__(self, text: str) -> None:
        self.script = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


SCRIPT = Script(DEVICE)


def bulk(v: str) -> bytes:
    b = v.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def keys_of(sn: str) -> list[str]:
    t = tags(P)[partition(sn, P)]
    return [f"{PREFIX}:client:{{{t}}}:{sn}", f"{PREFIX}:devices:{{{t}}}", f"{PREFIX}:devices:online:{{{t}}}",
            f"{PREFIX}:dq:{{{t}}}", f"{PREFIX}:callbacks:enabled:{{{t}}}:device"]


def call(sn: str, online: str, seen: str) -> tuple[bytes, int]:
    ks = keys_of(sn)
    args = ["EVALSHA", SCRIPT.sha, "5", *ks, sn, online, seen]
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args), key_slot(ks[0].encode())


def migrate_slot(slot: int, ports: list[int]) -> tuple[int, int]:
    """Move one slot to the next primary, the way redis-cli --cluster reshard does, keys in batches."""
    nodes = {p: redis.Redis(port=p) for p in ports}
    ids = {p: nodes[p].execute_command("CLUSTER MYID").decode() for p in ports}
    src = next(p for p in ports if nodes[p].execute_command("CLUSTER COUNTKEYSINSLOT", slot) > 0)
    dst = ports[(ports.index(src) + 1) % len(ports)]
    nodes[dst].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[src])
    nodes[src].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[dst])
    while True:
        batch = nodes[src].execute_command("CLUSTER GETKEYSINSLOT", slot, 200)
        if not batch:
            break
        nodes[src].execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *batch)
        time.sleep(0.002)  # let traffic hit the migrating slot (ASK / TRYAGAIN)
    for p in (dst, src, *[q for q in ports if q not in (src, dst)]):
        nodes[p].execute_command("CLUSTER SETSLOT", slot, "NODE", ids[dst])
    return src, dst


async def main(events: int) -> None:
    ports = [7101, 7102, 7103]
    sync = redis.RedisCluster(host="127.0.0.1", port=7101)
    # what today's unprefixed scripts do on a cluster: keys of several slots in one call
    try:
        sync.eval("return 1", 2, f"{PREFIX}:client:dev-1", f"{PREFIX}:devices")
    except redis.exceptions.RedisClusterException as exc:
        print("cross-slot EVAL refused as expected:", type(exc).__name__, str(exc)[:70])
    for p in ports:
        redis.Redis(port=p).flushall()
    for t in tags(P):  # the enabled device callbacks, replicated into every partition
        sync.sadd(f"{PREFIX}:callbacks:enabled:{{{t}}}:device", "1", "2")
    for p in ports:
        redis.Redis(port=p).config_resetstat()

    cluster = acluster.RedisCluster(host="127.0.0.1", port=7101)
    await cluster.initialize()
    batcher = ClusterBatcher(cluster, [SCRIPT])
    await batcher.load_scripts()
    sns = [f"SN{random.randrange(10**9):09d}" for _ in range(events // 4)]
    migrated: dict[str, object] = {}

    async def worker(w: int, share: list[str]) -> None:
        for k, sn in enumerate(share):
            cmd, slot = call(sn, "1" if k % 3 else "0", str(k))
            reply = (await batcher.submit([cmd], slot))[0]
            assert isinstance(reply, int), reply

    async def disturb() -> None:
        await asyncio.sleep(0.3)
        redis.Redis(port=7102).script_flush()          # this node forgets the script: NOSCRIPT, reloaded
        await asyncio.sleep(0.3)
        slot = key_slot(keys_of(sns[0])[0].encode())   # a live slot of the traffic moves to another primary
        migrated["slot"] = slot
        migrated["from_to"] = await asyncio.to_thread(migrate_slot, slot, ports)

    plan = [random.choice(sns) for _ in range(events)]
    workers = 200
    t0 = time.perf_counter()
    await asyncio.gather(disturb(), *(worker(w, plan[w::workers]) for w in range(workers)))
    took = time.perf_counter() - t0

    shards = sum(sync.zcard(f"{PREFIX}:devices:{{{t}}}") for t in tags(P))
    entries = sum(sync.xlen(f"{PREFIX}:dq:{{{t}}}") for t in tags(P))
    print(f"{events} events from {workers} submitters in {took:.2f}s ({events / took:.0f}/s, loaded machine)")
    print(f"devices in index shards {shards} (distinct sns {len(set(plan))}); stream entries {entries}"
          f" (expected {2 * events}: 2 enabled callbacks)")
    print("migrated slot", migrated.get("slot"), "from/to", migrated.get("from_to"), "batcher", batcher.stats)
    calls = {}
    for p in ports:
        st = redis.Redis(port=p).info("commandstats")
        calls[p] = (st.get("cmdstat_evalsha", {}).get("calls", 0), st.get("cmdstat_evalsha", {}).get("usec", 0))
    total = sum(u for _, u in calls.values())
    for p, (n, u) in calls.items():
        print(f"  :{p} evalsha calls {n:6d}  usec {u:8d}  share {100 * u / total:5.1f}%")
    assert shards == len(set(plan)) and entries == 2 * events
    print("OK")
    await cluster.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
