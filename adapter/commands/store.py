"""Commands in Redis, as the API process reads and writes them (async): create, one, a page, the device's
answer, cancel, and pruning of expired index entries (docs/commands.md, keys in adapter/store/keys.py).

Creating N commands costs one `INCRBY` (N ids at once, a counter per day) and N/1000 script calls sent in
one pipeline, so 10,000 devices in one POST stay well under a second. A page prunes expired entries from
the indexes first, so `total` counts exactly the commands that still exist.
"""

from __future__ import annotations

from typing import Any

from adapter.commands import ids as command_ids
from adapter.commands.ids import id_str
from adapter.commands.rules import COMMANDS, NUMKEYS, CommandRequest, response_view, run_script, script_args, view
from adapter.errors import AppError, not_found
from adapter.store.connections import texts
from adapter.store.keys import Keys
from adapter.store.resp import Arg
from adapter.store.types import AsyncRedis

CREATE_CHUNK = 1000
PRUNE_BATCH = 1000
PRUNE_ROUNDS = 10
SEQ_TTL = 2 * 86_400


def create_args(keys: Keys, req: CommandRequest, ids: list[int], start: int) -> list[Arg]:
    """The arguments of one `create` call of commands.lua: the commands `start` to `start + CREATE_CHUNK`."""
    common: list[Arg] = [req.sender, req.command, req.method, req.body, "1" if req.detached else "0",
                         req.expires, req.max_retries, "1" if req.publish_now else "0"]
    group: list[Arg] = []
    end = start + CREATE_CHUNK
    for cid, sn in zip(ids[start:end], req.sns[start:end], strict=True):
        group += [id_str(cid), command_ids.ordinal(cid), sn, keys.client(sn)]
    return script_args(keys, "create", *common, *group)


def targets(req: CommandRequest, ids: list[int]) -> list[dict[str, Any]]:
    """The seed's answer: `to`, one entry per device with its command's id."""
    return [{"id": cid, "idStr": id_str(cid), "sn": sn} for cid, sn in zip(ids, req.sns, strict=True)]


class CommandStore:
    def __init__(self, client: AsyncRedis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    async def _eval(self, mode: str, *args: Arg) -> Any:
        return await run_script(self.redis, self.keys, mode, *args)

    async def new_ids(self, count: int) -> list[int]:
        """`count` consecutive ids of today, from one INCRBY."""
        day = command_ids.today()
        key = self.keys.command_seq(day)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, count)
            pipe.expire(key, SEQ_TTL)
            last, _ = await pipe.execute()
        if int(last) > command_ids.MAX_SEQ:
            raise AppError("unavailable", "the command ids of today are used up")
        return command_ids.id_range(day, int(last), count)

    async def create(self, req: CommandRequest) -> list[dict[str, Any]]:
        """One command per device; answers the seed's `to` list, each with `idStr`."""
        ids = await self.new_ids(len(req.sns))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.scripts.add(COMMANDS)  # type: ignore[arg-type,union-attr]  # it needs only .sha and .script
            for start in range(0, len(ids), CREATE_CHUNK):
                pipe.evalsha(COMMANDS.sha, NUMKEYS, *create_args(self.keys, req, ids, start))
            await pipe.execute()
        return targets(req, ids)

    async def get(self, cid: int) -> dict[str, Any]:
        record = await self.redis.hgetall(self.keys.command(id_str(cid)))
        if not record:
            raise not_found(f"no command {cid}")
        return view(texts(record))

    def _index(self, sender: str | None, sn: str | None) -> str | None:
        if sender is not None and ":" in sender:
            return None  # no command has such a `from`
        if sender and sn:
            return self.keys.commands_from_sn(sender, sn)
        if sender:
            return self.keys.commands_from(sender)
        return self.keys.commands_of_sn(sn) if sn else self.keys.commands()

    async def page(self, sender: str | None, sn: str | None, page: int, limit: int) -> dict[str, Any]:
        """Newest first."""
        index = self._index(sender, sn)
        if index is None:
            return {"count": 0, "limit": limit, "list": [], "page": page, "total": 0}
        await self.prune()
        start = (page - 1) * limit
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(index)
            pipe.zrevrange(index, start, start + limit - 1)
            total, ids = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hgetall(self.keys.command(cid))
            records = await pipe.execute() if ids else []
        items = [view(texts(r)) for r in records if r]
        return {"count": len(items), "limit": limit, "list": items, "page": page, "total": int(total)}

    async def response(self, cid: int, sender: str | None) -> dict[str, Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.command(id_str(cid)), "from")
            pipe.get(self.keys.command_response(id_str(cid)))
            owner, stored = await pipe.execute()
        if owner is None or (sender and sender != owner):
            raise not_found(f"no command {cid}" + (f" from {sender}" if sender else ""))
        if stored is None:
            raise not_found(f"command {cid} has no response yet")
        return response_view(stored)

    async def cancel(self, cid: int) -> dict[str, Any]:
        """Failed with reason `canceled`, never sent again; a finished command is a conflict."""
        outcome = await self._eval("cancel", id_str(cid))
        if outcome == "not_found":
            raise not_found(f"no command {cid}")
        if outcome == "finished":
            raise AppError("conflict", f"command {cid} has finished already")
        return await self.get(cid)

    async def prune(self) -> int:
        """Drop expired commands from the indexes (bounded work; the runner prunes the rest)."""
        total = 0
        for _ in range(PRUNE_ROUNDS):
            n = int(await self._eval("prune", PRUNE_BATCH))
            total += n
            if n < PRUNE_BATCH:
                break
        return total
