"""One delivery of a partition's run: its Redis calls, its attempt, its outcome (the pump's part that runs once per
delivery; pump.py holds the control loop, serve.py the partitions' runs). A mixin of `Pump`: the attributes it
uses are the pump's, declared below.

Redis calls of a delivery go through `_redis`: a refusal (OOM, READONLY, BUSY, …) is tried again in place while the
run reads and sends nothing new; a lost connection ends the run (partition.RunOver). Outcomes go many to a script
call through the run's writer (writer.py); a delivery's chain goes on once its outcome is written when Redis holds
anything for the chain, else as soon as the outcome is known (docs/reliability.md "The delivery pump").
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from adapter.delivery import retry, signing
from adapter.delivery.breaker import Target, Targets, now_ms
from adapter.delivery.gate import Gate
from adapter.delivery.model import (
    AGAIN_LATER,
    RELEASING,
    Delivery,
    Limits,
    Outcome,
    OutcomeName,
    ScriptCall,
    hold_call,
    outcome_call,
)
from adapter.delivery.partition import Chain, PartitionRun, RunOver
from adapter.delivery.sender import Attempt, Sender
from adapter.delivery.writer import OutcomeWriter
from adapter.settings import Settings
from adapter.store import faults
from adapter.store.batcher import Batcher
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis

log = logging.getLogger("adapter.delivery.pump")
T = TypeVar("T")
GROUP = "pumps"
GATE_DEFER_MS = 1000  # how long a delivery that gave up waiting for a slow target's turn waits in Redis
BACKOFF_S = (0.05, 0.5)  # waits between tries while Redis is in trouble: from, doubling up to


class Deliveries:
    settings: Settings
    keys: Keys
    redis: AsyncRedis
    batcher: Batcher | None
    limits: Limits
    sender: Sender
    rng: random.Random
    schedule: tuple[float, ...]
    targets: Targets
    slots: asyncio.Semaphore
    gates: dict[str, Gate]
    delivered: int

    # --- talking to Redis within a run ----------------------------------------------------------------------

    async def _redis(self, run: PartitionRun, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` until Redis takes it: refusals are tried again in place (the run reads and sends nothing
        meanwhile), a lost connection ends the run (RunOver). A task in here is not cancelled by the run's end
        (its write may have been sent); it stops at its next try."""
        task = asyncio.current_task()
        if task is not None:
            run.writing.add(task)
        pause = BACKOFF_S[0]
        try:
            while True:
                run.check()
                try:
                    result = await call()
                except Exception as exc:
                    if not faults.trouble(exc):
                        raise
                    if faults.connection_lost(exc):
                        run.fail(exc)
                        raise RunOver() from exc
                    if run.writable.is_set():
                        log.warning("delivery pump: partition %d: redis refuses writes (%s: %s): nothing new is read "
                                    "or sent until it takes them", run.p, type(exc).__name__, exc)
                    run.writable.clear()
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, BACKOFF_S[1])
                    continue
                if not run.writable.is_set():
                    log.info("delivery pump: partition %d: redis takes writes again", run.p)
                    run.writable.set()
                return result
        finally:
            if task is not None:
                run.writing.discard(task)

    async def _send(self, call: ScriptCall) -> Any:
        """One script call: through the batcher on one Redis (it shares round trips), by itself on a cluster (redis-py
        routes it by its KEYS)."""
        if self.batcher is None:
            return await call.run(self.redis)
        [reply] = await self.batcher.submit([call.packed()])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _write(self, run: PartitionRun, call: ScriptCall) -> Any:
        return await self._redis(run, lambda: self._send(call))

    async def _record(self, run: PartitionRun, call: ScriptCall) -> Any:
        """An outcome, through the run's writer (many to a script call); answers its chain's mark."""
        if run.outcomes is None:
            run.outcomes = OutcomeWriter(self._send)
        writer = run.outcomes
        return await self._redis(run, lambda: writer.write(call))

    async def _one(self, p: int, run: PartitionRun, s: Any, entry_id: str, d: Delivery,
                   release: Callable[[], None]) -> None:
        """Send one delivery and record its outcome. The chain's next delivery goes once this one's outcome is
        written when Redis holds anything for the chain (a hold, a release under way) or the outcome makes one;
        otherwise (the common case) as soon as the outcome is known, while it is written."""
        chain: Chain = (d.target, d.key)
        if _held_behind(run.holds.get(chain), d):
            held, mark = await self._write(run, hold_call(self.keys, p, GROUP, entry_id, d, self.limits, now_ms()))
            run.set_mark(chain, mark)
            if int(held) != 0:  # held (1), or done already (-1)
                return
            # Redis holds nothing for the chain (memory was behind): it goes now
        head = run.holds.get(chain)
        target = self.targets.fresh(d.target, p) or await self._redis(run, lambda: self.targets.get(d.target, p))
        outcome = await self._attempt(p, run, s, d, target)
        command = outcome_call(self.keys, p, GROUP, entry_id, d, outcome, target.cb_type if target else None,
                               self.limits, now_ms())
        if outcome.name in AGAIN_LATER or head is not None or d.released == 2:
            run.set_mark(chain, await self._record(run, command))
        else:
            release()
            await self._record(run, command)
        self.delivered += outcome.name == OutcomeName.SUCCESS

    async def _attempt(self, p: int, run: PartitionRun, s: Any, d: Delivery, target: Target | None) -> Outcome:
        if target is None or not target.enabled:
            return Outcome(OutcomeName.DROPPED, error="target deleted" if target is None else "target disabled")
        probe = target.open
        if probe and not await self._redis(run, lambda: self.targets.probe(d.target, p, target)):
            return Outcome(OutcomeName.DEFERRED, due_ms=max(target.probe_at, now_ms()) + self.rng.randrange(0, 1000))
        await self._may_send(run, s)
        gate = self.gates.get(d.target)
        if gate is None:
            gate = self.gates[d.target] = Gate(self.settings.delivery_target_concurrency)
        token = await gate.turn()
        if token is None:
            due_ms = now_ms() + GATE_DEFER_MS + self.rng.randrange(0, GATE_DEFER_MS)
            return Outcome(OutcomeName.DEFERRED, due_ms=due_ms)
        try:
            if target.open and not probe:  # opened while this one waited for its turn
                return Outcome(OutcomeName.DEFERRED, due_ms=target.probe_at + self.rng.randrange(0, 1000))
            await self._may_send(run, s)
            async with self.slots:
                headers = signing.headers(target.key, d.id, int(time.time()), d.body)
                a = await self.sender.post(target.url, d.body, headers, self.settings.delivery_timeout)
        finally:
            gate.done(token)
        verdict = retry.classify(a.status, a.error)
        if verdict == "success":
            target.succeeded()  # as the outcome script does
            return _outcome(OutcomeName.SUCCESS, a)
        if verdict == "fail":
            return _outcome(OutcomeName.FAILED, a)
        target.failed(self.limits.breaker_threshold, self.limits.breaker_probe_ms)
        delay = retry.next_delay(d.attempts + 1, self.schedule, self.rng, a.retry_after)
        if delay is None:
            return _outcome(OutcomeName.DEAD, a)
        return _outcome(OutcomeName.RETRY, a, due_ms=int((time.time() + delay) * 1000))

    async def _may_send(self, run: PartitionRun, s: Any) -> None:
        """Wait while Redis refuses this partition's writes (a send now could not be recorded); never send on a
        lease in doubt (another pump may take the partition over and send it too) or once the run is stopping."""
        while not run.writable.is_set():
            await run.writable.wait()
            run.check()
        if not s.lease.valid():
            run.stopping = True  # the run ends (its chains stop where they are); the next once the lease is renewed
        run.check_send()


def _held_behind(head: str | None, d: Delivery) -> bool:
    """Whether a delivery waits behind its chain's mark: a head that is another delivery, or a release under way
    that it is not part of."""
    return head is not None and head != d.id and not (head == RELEASING and d.released)


def _outcome(name: OutcomeName, a: Attempt, due_ms: int | None = None) -> Outcome:
    return Outcome(name, status=a.status, duration_ms=a.duration_ms, error=a.error, excerpt=a.excerpt, due_ms=due_ms)
