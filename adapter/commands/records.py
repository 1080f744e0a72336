"""Commands in Redis, as the API process reads and writes them (async): create, one, a page, the device's
answer, cancel, and pruning of expired index entries (docs/commands.md, keys in adapter/store/keys.py).

Creating N commands costs one `INCRBY` (N ids at once, a counter per day) and N/100 script calls sent in
one pipeline, so 10,000 devices in one POST stay well under a second. A page prunes expired entries from
the indexes first, so `total` counts exactly the commands that still exist.

On Redis Cluster a command lives in its device's partition (docs/commands.md "On Redis Cluster"): creating
groups the devices by partition (an `INCRBY` and its script calls per partition, all in one pipeline), a
command's id gives its partition back, and a listing without `sn` merges the partitions (merge.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapter.commands import calls, merge
from adapter.commands import ids as command_ids
from adapter.commands.ids import id_str
from adapter.commands.rules import CommandRequest, response_view, view
from adapter.errors import AppError, not_found
from adapter.store.connections import texts
from adapter.store.keys import Keys
from adapter.store.resp import Arg
from adapter.store.scripts import ScriptCall
from adapter.store.types import AsyncRedis

CREATE_CHUNK = 50
PRUNE_BATCH = 1000
PRUNE_ROUNDS = 10
SEQ_TTL = 2 * 86_400


def partition(keys: Keys, cid: int) -> int:
    """The partition of a command, from its id alone (0 on one Redis)."""
    return command_ids.partition_of(cid, keys.cluster_partitions)


def by_partition(keys: Keys, sns: Sequence[str]) -> dict[int, list[int]]:
    """The positions of `sns` grouped by their devices' partition, in order (one group on one Redis)."""
    if not keys.cluster:
        return {0: list(range(len(sns)))}
    groups: dict[int, list[int]] = {}
    for i, sn in enumerate(sns):
        groups.setdefault(keys.shard(sn), []).append(i)
    return groups


def create_calls(keys: Keys, req: CommandRequest, ids: list[int], *,
                 only_new: bool = False) -> list[tuple[int, ScriptCall]]:
    """The `create` calls of lifecycle.lua for `ids` (one per device of `req.sns`): per partition, `CREATE_CHUNK`
    commands at a time, each with how many it writes; always in the same order (a job resumes by that count)."""
    common: list[Arg] = [req.sender, req.command, req.method, req.body, "1" if req.detached else "0",
                         req.expires, req.max_retries, "1" if req.publish_now else "0"]
    out: list[tuple[int, ScriptCall]] = []
    for p, positions in sorted(by_partition(keys, req.sns).items()):
        for start in range(0, len(positions), CREATE_CHUNK):
            group: list[Arg] = []
            for i in positions[start:start + CREATE_CHUNK]:
                sn = req.sns[i]
                group += [id_str(ids[i]), command_ids.ordinal(ids[i]), sn, keys.client(sn)]
            out.append((len(group) // len(calls.CREATE_GROUP), calls.create_call(keys, p, common, group,
                                                                                  only_new=only_new)))
    return out


def targets(req: CommandRequest, ids: list[int]) -> list[dict[str, Any]]:
    """The seed's answer: `to`, one entry per device with its command's id."""
    return [{"id": cid, "idStr": id_str(cid), "sn": sn} for cid, sn in zip(ids, req.sns, strict=True)]


class CommandStore:
    def __init__(self, client: AsyncRedis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def new_ids(self, sns: Sequence[str]) -> list[int]:
        """An id for each of `sns`, in order: one INCRBY of today's counter on one Redis; on the cluster one
        per partition of the devices (its counter, its ids)."""
        day = command_ids.today()
        if not self.keys.cluster:
            key = self.keys.command_seq(day, 0)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, len(sns))
                pipe.expire(key, SEQ_TTL)
                last, _ = await pipe.execute()
            if int(last) > command_ids.MAX_SEQ:
                raise AppError("unavailable", "the command ids of today are used up")
            return command_ids.id_range(day, int(last), len(sns))
        groups = by_partition(self.keys, sns)
        P = self.keys.cluster_partitions
        async with self.redis.pipeline(transaction=False) as pipe:
            for p, positions in groups.items():
                pipe.incrby(self.keys.command_seq(day, p), len(positions))
                pipe.expire(self.keys.command_seq(day, p), SEQ_TTL)
            replies = await pipe.execute()
        out = [0] * len(sns)
        for (p, positions), last in zip(groups.items(), replies[::2], strict=True):
            if int(last) > command_ids.max_local(p, P):
                raise AppError("unavailable", "the command ids of today are used up")
            for i, cid in zip(positions, command_ids.partition_range(day, int(last), len(positions), p, P),
                              strict=True):
                out[i] = cid
        return out

    async def create(self, req: CommandRequest) -> list[dict[str, Any]]:
        """One command per device; answers the seed's `to` list, each with `idStr`."""
        ids = await self.new_ids(req.sns)
        await calls.run_many(self.redis, [c for _, c in create_calls(self.keys, req, ids)])
        return targets(req, ids)

    async def get(self, cid: int) -> dict[str, Any]:
        record = await self.redis.hgetall(self.keys.command(id_str(cid), partition(self.keys, cid)))
        if not record:
            raise not_found(f"no command {cid}")
        return view(texts(record))

    def _indexes(self, sender: str | None, sn: str | None) -> list[str] | None:
        """The sorted sets a listing reads: one per device; one per partition otherwise."""
        if sender is not None and ":" in sender:
            return None  # no command has such a `from`
        if sn:
            return [self.keys.commands_from_sn(sender, sn) if sender else self.keys.commands_of_sn(sn)]
        if sender:
            return [self.keys.commands_from(sender, p) for p in self.keys.shards()]
        return [self.keys.commands(p) for p in self.keys.shards()]

    async def page(self, sender: str | None, sn: str | None, page: int, limit: int) -> dict[str, Any]:
        """Newest first (by ordinal; across partitions see docs/commands.md)."""
        indexes = self._indexes(sender, sn)
        if indexes is None:
            return {"count": 0, "limit": limit, "list": [], "page": page, "total": 0}
        await self.prune()
        start = (page - 1) * limit
        if len(indexes) == 1:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(indexes[0])
                pipe.zrevrange(indexes[0], start, start + limit - 1)
                total, found = await pipe.execute()
            members = [str(m) for m in found]
        else:
            total, members = await merge.page(self.redis, indexes, start, limit)
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in members:
                pipe.hgetall(self.keys.command(m, self._partition_of_member(m)))
            records = await pipe.execute() if members else []
        items = [view(texts(r)) for r in records if r and command_ids.parse_id(r.get("id")) is not None]
        return {"count": len(items), "limit": limit, "list": items, "page": page, "total": int(total)}

    def _partition_of_member(self, member: str) -> int:
        cid = command_ids.parse_id(member)
        return partition(self.keys, cid) if cid is not None else 0

    async def response(self, cid: int, sender: str | None) -> dict[str, Any]:
        p = partition(self.keys, cid)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.command(id_str(cid), p), "from")
            pipe.get(self.keys.command_response(id_str(cid), p))
            owner, stored = await pipe.execute()
        if owner is None or (sender and sender != owner):
            raise not_found(f"no command {cid}" + (f" from {sender}" if sender else ""))
        if stored is None:
            raise not_found(f"command {cid} has no response yet")
        return response_view(stored)

    async def cancel(self, cid: int) -> dict[str, Any]:
        """Failed with reason `canceled`, never sent again; a finished command is a conflict."""
        outcome = str(await calls.run(self.redis, calls.cancel_call(self.keys, partition(self.keys, cid),
                                                                      id_str(cid))))
        if outcome == "not_found":
            raise not_found(f"no command {cid}")
        if outcome == "finished":
            raise AppError("conflict", f"command {cid} has finished already")
        return await self.get(cid)

    async def prune(self) -> int:
        """Drop expired commands from the indexes of every partition (bounded work; the runner prunes the
        rest)."""
        return await prune(self.redis, self.keys, PRUNE_BATCH, PRUNE_ROUNDS)


async def prune(client: Any, keys: Keys, batch: int, rounds: int) -> int:
    """Up to `rounds` prune calls of `batch` per partition, the partitions of a round in one pipeline."""
    total = 0
    todo = list(keys.shards())
    for _ in range(rounds):
        if not todo:
            break
        done = await calls.run_many(client, [calls.prune_call(keys, p, batch) for p in todo])
        total += sum(int(n) for n in done)
        todo = [p for p, n in zip(todo, done, strict=True) if int(n) >= batch]
    return total
