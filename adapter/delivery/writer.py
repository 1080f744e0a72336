"""The pump's outcome writes of one partition, many to a script call (issue 21): while one call is in flight, the
outcomes that come meanwhile gather, and the next call carries them all (outcome.lua takes any number of them and
answers one mark each). A flush waits on no timer. Refusals and lost connections reach every outcome of the call,
and each one's delivery handles them as it would its own call (pump.Pump._redis: again in place, or the run ends);
a call sent again is harmless (each outcome does nothing for an entry no longer pending)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from adapter.delivery.model import ScriptCall, outcomes
from adapter.store.batcher import Coalescer

MAX_PER_CALL = 32  # outcomes one call carries at most: a script call holds Redis for its run (~20 µs an outcome), and
# the ingest's calls wait behind it


class OutcomeWriter(Coalescer[ScriptCall]):
    def __init__(self, send: Callable[[ScriptCall], Awaitable[Any]]) -> None:
        super().__init__()
        self.send = send  # one merged call to Redis; answers its list of marks
        self.calls = 0  # script calls sent (a figure for the benchmarks)

    async def write(self, call: ScriptCall) -> Any:
        """Write one outcome; answers its chain's mark."""
        [mark] = await self.submit([call])
        return mark

    async def _execute(self, groups: list[Sequence[ScriptCall]]) -> list[list[Any]]:
        flat = [call for group in groups for call in group]
        marks: list[Any] = []
        for start in range(0, len(flat), MAX_PER_CALL):
            self.calls += 1
            reply = await self.send(outcomes(flat[start:start + MAX_PER_CALL]))
            marks.extend(reply)
        out, i = [], 0
        for group in groups:
            out.append(marks[i:i + len(group)])
            i += len(group)
        return out
