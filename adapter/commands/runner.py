"""The command runner: publishes due commands through EMQX's REST API, in every `adapter worker` process.

Why a loop beside the RQ worker and not RQ jobs: a command is due at a time (now, after the ack timeout,
after a broker error) and must go out within a fraction of a second of it; the delivery pump already
showed that RQ's per-job overhead (70 to 200 jobs/s here) is far from 10,000 commands in seconds, and one
RQ job per batch would still need a scheduler tick per due time. So the runner polls one sorted set of
due commands every `TICK` seconds, claims a batch atomically (lifecycle.lua `claim`: each claimed command
is leased, and comes due again should this process die mid-publish), publishes the batch with
`/publish/bulk` in chunks, several chunks concurrently, and records each outcome (`record`):
- 200 sent: `tryTimes` + 1, in progress, due again after the ack timeout (a resend, or the failure once
  `maxRetries` sends went unanswered);
- 202 no matching subscribers: not sent; it waits for its device to come online (the ingest wakes it);
- 503 or EMQX unreachable: due again after a backoff (`ADAPTER_COMMAND_RETRY_SCHEDULE`, the last step
  repeating, with jitter), until the command expires;
- 400 rejected: failed with reason `rejected` (a bulk 400 refuses the whole chunk, so its messages are
  then published one by one to find the culprit).
Several runners (workers) share the set safely. The runner also prunes expired commands every second.

Redis trouble of any kind (faults.trouble: a refused write, a lost connection, the redis-py reset race) does not
stop the runner: a tick that fails waits `outage.PAUSE` and tries again, so the runner resumes within about that
of Redis answering. Outcomes that could not be recorded are recorded again in place, with the same `send` token
(lifecycle.lua `record` applies one send's outcome once however often it runs), until Redis takes them; meanwhile
the runner claims nothing new. Left to their lease they would be published again. Only a runner that is stopping
gives up on them after `RECORD_GRACE` s: then, and after a SIGKILL, what was in flight goes out again after its
lease, and nothing else.
On Redis Cluster every partition has its own due and expiry sets: a tick claims from each (its share of the
room; one pipeline, P small calls) and records each outcome in its command's partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from collections.abc import Sequence
from typing import Any

from adapter.broker.client import EmqxClient, Message, PublishOutcome, PublishResult
from adapter.commands import calls
from adapter.commands.ids import partition_of
from adapter.commands.rules import CLAIM_WIDTH, Claimed, downlink
from adapter.delivery import retry
from adapter.errors import AppError
from adapter.protocol import uplink
from adapter.settings import Settings, parse_schedule
from adapter.store import outage
from adapter.store.connections import async_redis
from adapter.store.keys import Keys
from adapter.store.outage import Outage
from adapter.store.scripts import ScriptCall
from adapter.store.types import AsyncRedis

log = logging.getLogger("adapter.commands.runner")

TICK = 0.05
PRUNE_EVERY = 1.0
PRUNE_BATCH = 1000
SCRIPT_ROWS = 50  # commands a claim or record call takes at most: Redis is held ~0.5 ms, not ~3 ms (250)
RECORD_GRACE = 5.0  # s a stopping runner still tries to record outcomes while Redis is in trouble
OUTCOMES = {PublishOutcome.SENT: "sent", PublishOutcome.NO_SUBSCRIBERS: "no_subscribers",
            PublishOutcome.RETRY: "retry", PublishOutcome.REJECTED: "rejected"}


def backoff(errors: int, schedule: Sequence[float], rng: random.Random) -> float:
    """Seconds before the next try after `errors` publish errors in a row (1 after the first)."""
    step = schedule[min(max(errors, 1), len(schedule)) - 1]
    return step * rng.uniform(1 - retry.JITTER, 1 + retry.JITTER)


def schedule_of(settings: Settings) -> tuple[float, ...]:
    """The retry waits; `Settings` checked the text when it was read."""
    return parse_schedule(settings.command_retry_schedule)


def lease_ms(settings: Settings) -> int:
    """How long a claimed command is ours: a bulk publish, and one by one after a bulk 400."""
    return int((4 * settings.emqx_timeout + 5) * 1000)


class CommandRunner:
    def __init__(self, settings: Settings, client: AsyncRedis, emqx: EmqxClient,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.keys = Keys.of(settings)
        self.redis = client
        self.emqx = emqx
        self.rng = rng or random.Random()
        self.schedule = schedule_of(settings)
        self.batch = settings.command_publish_batch
        self.slots = settings.command_publish_concurrency
        self.inflight: set[asyncio.Task[None]] = set()
        self.published = 0
        self._pruned_at = 0.0
        self.full = False  # the last claim took a partition's whole share: more is due at once
        self._turn = 0  # which partition gets the remainder of the room first (cluster)
        self.unrecorded = 0  # chunks whose outcomes wait for Redis to take them: claim nothing meanwhile
        self.outage = Outage("commands", log)
        self.stop = asyncio.Event()

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        self.stop = stop
        try:
            while not stop.is_set():
                if len(self.inflight) >= self.slots:
                    await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                # one publish batch a claim: a claim of every free slot's batch (2,000) held Redis ~50 ms, and a
                # full batch claims the next at once
                room = min(self.room(), self.batch)
                claimed = await self.step(room)
                if burst and not claimed and not self.inflight:
                    break
                if claimed < room and not self.full:  # nothing more is due right now
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=TICK)
        finally:
            if self.inflight:
                await asyncio.gather(*self.inflight, return_exceptions=True)

    def room(self) -> int:
        """How many commands the free publishing slots can take now."""
        return max(0, self.slots - len(self.inflight)) * self.batch

    async def step(self, limit: int | None = None) -> int:
        """Prune when it is time, claim up to `limit` due commands (default: the room), start publishing
        them; answers how many it claimed."""
        limit = self.room() if limit is None else limit
        if limit <= 0 or self.unrecorded:
            return 0
        try:
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
                await calls.run_many(self.redis, [calls.prune_call(self.keys, p, PRUNE_BATCH)
                                                  for p in self.keys.shards()])
                self._pruned_at = time.monotonic()
            claimed = await self.claim(limit)
        except Exception as exc:
            if not self.outage.failed(exc):
                raise
            await asyncio.sleep(outage.PAUSE)
            return 0
        self.outage.ok()
        for start in range(0, len(claimed), self.batch):
            task = asyncio.get_running_loop().create_task(self.publish(claimed[start:start + self.batch]))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)
        return len(claimed)

    async def claim(self, limit: int) -> list[Claimed]:
        """Up to `limit` due commands: all of it from the one due set on one Redis; on the cluster each
        partition gets its share (the remainder goes round the partitions tick by tick)."""
        shares = shares_of(limit, len(self.keys.shards()), self._turn)
        self._turn += 1
        lease = lease_ms(self.settings)
        left = {p: n for p, n in enumerate(shares) if n > 0}
        rows: list[Any] = []
        full = False  # a partition gave its whole share: more may be due there
        while left:  # rounds of one call per partition (SCRIPT_ROWS at most), on while a partition's come back full
            round_ = [(p, min(n, SCRIPT_ROWS)) for p, n in left.items()]
            replies = await calls.run_many(self.redis, [calls.claim_call(self.keys, p, k, lease) for p, k in round_])
            rows += replies
            more = {p: left[p] - k for (p, k), reply in zip(round_, replies, strict=True)
                    if len(reply) >= k * CLAIM_WIDTH}
            full = full or 0 in more.values()
            left = {p: n for p, n in more.items() if n > 0}
        self.full = len(shares) > 1 and full
        return [c for reply in rows for c in claimed_of(reply)]

    async def publish(self, chunk: list[Claimed]) -> None:
        """Publish one chunk and record every outcome (through Redis trouble: `record`); a bug leaves the chunk to
        its lease."""
        try:
            results = await self._send(chunk)
            self.published += sum(r.outcome is PublishOutcome.SENT for r in results)
            await self.record(chunk, results)
        except Exception:
            log.exception("commands: publishing %d commands failed; they are tried again after their lease",
                          len(chunk))

    async def _send(self, chunk: list[Claimed]) -> list[PublishResult]:
        now_s = int(time.time())
        messages = [Message(uplink.command_topic(c.sn), downlink(c, now_s).decode(), qos=1) for c in chunk]
        try:
            bulk = await self.emqx.publish_bulk(messages)
        except AppError as exc:  # unreachable, timeout, an unexpected status
            log.warning("commands: publish: %s", exc.msg)
            return [PublishResult(PublishOutcome.RETRY, message=exc.msg)] * len(chunk)
        if bulk.outcome is PublishOutcome.REJECTED and len(chunk) > 1:
            return [await self._send_one(m) for m in messages]
        return list(bulk.items)

    async def _send_one(self, message: Message) -> PublishResult:
        try:
            return await self.emqx.publish(message.topic, message.payload, qos=message.qos)
        except AppError as exc:
            return PublishResult(PublishOutcome.RETRY, message=exc.msg)

    async def record(self, chunk: list[Claimed], results: Sequence[PublishResult]) -> None:
        """Every outcome, in one `record` call per partition of the chunk's commands, sent again while Redis is in
        trouble (the same calls: one token, the same retry times) until it takes them; a stopping runner gives up
        after RECORD_GRACE s (the commands go out again after their lease)."""
        todo = self.record_calls(chunk, results)
        trouble = Outage(f"commands: recording {len(chunk)} outcomes", log)
        give_up, waiting = math.inf, False
        try:
            while True:
                try:  # on one Redis one call at a time; sent again whole, each call applies once (its token)
                    await calls.run_in_rounds(self.redis, todo, len(self.keys.shards()))
                    trouble.ok()
                    return
                except Exception as exc:
                    if not trouble.failed(exc):
                        raise
                if not waiting:
                    waiting = True
                    self.unrecorded += 1
                if self.stop.is_set():
                    give_up = min(give_up, time.monotonic() + RECORD_GRACE)
                if time.monotonic() >= give_up:
                    log.warning("commands: stopping: %d outcomes not recorded, left to their lease", len(chunk))
                    return
                await asyncio.sleep(outage.PAUSE)
        finally:
            if waiting:
                self.unrecorded -= 1

    def record_calls(self, chunk: list[Claimed], results: Sequence[PublishResult]) -> list[ScriptCall]:
        """The `record` calls of one published chunk, one per partition, under one token of this send."""
        now = time.time()
        rows: dict[int, list[tuple[str, str, int]]] = {}
        for c, r in zip(chunk, results, strict=True):
            due = int((now + backoff(c.errors + 1, self.schedule, self.rng)) * 1000)
            p = partition_of(c.id, self.keys.cluster_partitions)
            rows.setdefault(p, []).append((str(c.id), OUTCOMES[r.outcome],
                                           due if r.outcome is PublishOutcome.RETRY else 0))
            if r.outcome is PublishOutcome.REJECTED:
                log.warning("commands: EMQX rejected command %s to %s: %s", c.id, c.sn, r.message)
        ack = int(self.settings.command_ack_timeout * 1000)
        send = secrets.token_hex(8)
        return [calls.record_call(self.keys, p, ack, send, group[i:i + SCRIPT_ROWS])
                for i in range(0, max(map(len, rows.values()), default=0), SCRIPT_ROWS)
                for p, group in rows.items() if group[i:i + SCRIPT_ROWS]]


def shares_of(limit: int, partitions: int, turn: int) -> list[int]:
    """`limit` split over `partitions` as evenly as can be; the partitions from `turn` on get one more."""
    base, extra = divmod(limit, partitions)
    return [base + (1 if (p - turn) % partitions < extra else 0) for p in range(partitions)]


def claimed_of(reply: Sequence[Any]) -> list[Claimed]:
    """A claim's rows; one that is not a command (lifecycle.lua drops such members: this is the last guard, a
    runner must not die of one) is logged and left to its lease."""
    out = []
    for i in range(0, len(reply), CLAIM_WIDTH):
        try:
            out.append(Claimed.from_reply(reply[i:i + CLAIM_WIDTH]))
        except (ValueError, IndexError):
            log.warning("commands: skipping a claimed row that is not a command: %r", reply[i:i + CLAIM_WIDTH])
    return out


async def run_commands(settings: Settings, stop: asyncio.Event, *, burst: bool = False) -> CommandRunner:
    client = async_redis(settings, socket_timeout=10)
    emqx = EmqxClient.from_settings(settings)
    runner = CommandRunner(settings, client, emqx)
    try:
        await runner.run(stop, burst=burst)
    finally:
        await emqx.aclose()
        await client.aclose()
    return runner
