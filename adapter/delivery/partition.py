"""What a pump holds in memory for one partition it serves, for one run: from the moment it (re)loaded the
partition's state from Redis until it lost its connection to Redis, lost its lease, or let the partition go
(docs/reliability.md). Nothing in it is the only copy of anything: the partition's entries stay pending in Redis
until their outcome is written, and every run starts by reading the holds and claiming the pending entries again.

- `tails`: per chain (target, key) the completion of its latest delivery in memory; a delivery waits for the one
  before it, so a chain goes out in order.
- `working`: the entry ids of this run's deliveries (stream entry ids repeat across partitions; this set is one
  partition's), which a reclaim must not start twice.
- `holds`: per chain the mark Redis holds for it (`head:<id>` -> the id, `rel` -> RELEASING), set from what the
  scripts answer after their write succeeded, never ahead of Redis.
- `writable`: cleared while Redis refuses this partition's writes (OOM, READONLY, MISCONF, BUSY, …): the run reads
  no new entries and sends nothing until a write succeeds again (back-pressure).
- `broken`: set once the connection was lost mid-call: what is in memory may be stale (a failover, a restart);
  the run ends and a new one starts from Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from adapter.delivery.model import HEAD, RELEASING
from adapter.store.types import as_text

Chain = tuple[str, str]  # (target, key)


class RunOver(Exception):
    """The run ended (connection lost, lease lost, partition released) while a delivery was under way: it stops
    where it is; its entry stays pending for the next run (or the next holder) to send."""


@dataclass
class PartitionRun:
    p: int
    tails: dict[Chain, asyncio.Future[None]] = field(default_factory=dict)
    working: set[str] = field(default_factory=set)
    holds: dict[Chain, str] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writing: set[asyncio.Task[None]] = field(default_factory=set)  # tasks writing an outcome: not cancelled
    parked: int = 0  # tasks waiting behind their chain's earlier delivery
    writable: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: list[asyncio.Future[None]] = field(default_factory=list)  # woken as a delivery of the run ends
    outcomes: Any = None  # the run's OutcomeWriter (writer.py), made by the pump at the first outcome
    broken: BaseException | None = None
    stopping: bool = False  # the partition is let go (or its lease lost): nothing new is sent, outcomes are written
    over: bool = False

    def __post_init__(self) -> None:
        self.writable.set()

    def fail(self, exc: BaseException) -> None:
        """The connection was lost mid-call: the run must end (its loop sees `broken`)."""
        if self.broken is None:
            self.broken = exc

    def check(self) -> None:
        """Before each Redis call of a delivery: the run still stands."""
        if self.over or self.broken is not None:
            raise RunOver()

    def check_send(self) -> None:
        """Before a send: the run still stands and is not stopping."""
        self.check()
        if self.stopping:
            raise RunOver()

    def ending(self) -> bool:
        return self.over or self.stopping or self.broken is not None

    def set_mark(self, chain: Chain, mark: Any) -> None:
        """The chain's mark as a script answered it (outcome.lua `mark`)."""
        held = mark_of(mark)
        if held is None:
            self.holds.pop(chain, None)
        else:
            self.holds[chain] = held

    def spawn(self, chain: Chain, entry: str, work: Callable[[Callable[[], None]], Coroutine[Any, Any, None]],
              on_error: Callable[[BaseException], None]) -> None:
        """Start `work(release)` for one entry of `chain`, after the chain's previous delivery in memory ends.
        `release` lets the next one go (called at the latest when the task ends)."""
        before = self.tails.get(chain)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tails[chain] = done
        self.working.add(entry)
        if before is not None:  # waits behind its device's earlier delivery: no read credit (counted now)
            self.parked += 1

        def release() -> None:
            if not done.done():
                done.set_result(None)
            if self.tails.get(chain) is done:
                del self.tails[chain]

        async def run() -> None:
            try:
                if before is not None:
                    try:
                        await before
                    finally:
                        self.parked -= 1
                self.check()
                await work(release)
            except (RunOver, asyncio.CancelledError):
                pass
            except Exception as exc:
                on_error(exc)
            finally:
                self.working.discard(entry)
                self._wake()
                if self.ending():
                    # the run is ending: the chain's later deliveries must not go before this one (they are
                    # cancelled, or stop at their check); only a finished run lets them
                    if not done.done():
                        done.cancel()
                else:
                    release()

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def next_end(self, timeout: float) -> None:
        """Until a delivery of the run ends, or `timeout` (a future and a timer: no task per wait)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiting.append(waiter)
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    def _wake(self) -> None:
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            _resolve(waiter)

    async def end(self) -> None:
        """Stop every delivery of the run: those not writing their outcome are cancelled (a request in flight may
        have reached its target: a duplicate when the next run sends it again); those writing finish or give up
        at their next try (`check`)."""
        self.over = True
        self.writable.set()  # wake the waiters: they stop at their check
        for task in list(self.tasks):
            if task not in self.writing:
                task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def mark_of(raw: Any) -> str | None:
    """A chain mark as stored (`head:<id>`, `rel`, or empty) -> what `holds` keeps (the id, RELEASING, None)."""
    text = as_text(raw)
    if text.startswith(HEAD):
        return text[len(HEAD):]
    if text == RELEASING:
        return RELEASING
    return None
