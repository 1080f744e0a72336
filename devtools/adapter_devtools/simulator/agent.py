"""One simulated device: its report set per interval and its command handling, without any MQTT.

The agent turns "it is time to report" into a list of (topic, payload) pairs and a received command
payload into the answer to publish. Test behaviours (`fail_first`, `answer=False`) live here too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from adapter_devtools.simulator import reports
from adapter_devtools.simulator.commands import Command, Outcome, ShPolicy, execute, parse_command, response

Message = tuple[str, bytes]
Executor = Callable[[Command, ShPolicy], Outcome]

_REMEMBERED_IDS = 1024


@dataclass(frozen=True)
class AgentOptions:
    interval: float = 5.0
    gateway: bool = False
    policy: ShPolicy = field(default_factory=ShPolicy)
    fail_first: int = 0
    answer: bool = True
    toggle_chance: float = 0.2
    failing: bool = False  # answers err to every command (`--failure-rate`)


class CommandDesk:
    """Counts receptions per command id and never runs one id twice at the same time.

    A reception while the same id is still running shares that run's outcome (and is answered again);
    a reception after the run finished runs the command again, as a platform retry expects.
    """

    def __init__(self, policy: ShPolicy, fail_first: int = 0, run: Executor = execute, failing: bool = False) -> None:
        self.policy = policy
        self.fail_first = fail_first
        self.failing = failing
        self._run = run
        self._receptions: OrderedDict[str, int] = OrderedDict()
        self._running: dict[str, asyncio.Future[Outcome]] = {}

    def _count(self, key: str) -> int:
        n = self._receptions.pop(key, 0) + 1
        self._receptions[key] = n
        while len(self._receptions) > _REMEMBERED_IDS:
            self._receptions.popitem(last=False)
        return n

    async def handle(self, cmd: Command) -> Outcome:
        n = self._count(cmd.key)
        if self.failing:
            return Outcome.err("simulated device failure")
        if n <= self.fail_first:
            return Outcome.err(f"simulated failure {n}/{self.fail_first}")
        running = self._running.get(cmd.key)
        if running is None or running.done():
            running = asyncio.ensure_future(asyncio.to_thread(self._run, cmd, self.policy))
            self._running[cmd.key] = running
            running.add_done_callback(lambda task: self._forget(cmd.key, task))
        return await asyncio.shield(running)

    def _forget(self, key: str, task: asyncio.Future[Outcome]) -> None:
        if self._running.get(key) is task:
            del self._running[key]


class Agent:
    def __init__(self, sn: str, options: AgentOptions, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time, run: Executor = execute) -> None:
        self.sn = sn
        self.options = options
        self.rng = rng or random.Random()
        self.clock = clock
        self.boot_time = int(clock())
        self.desk = CommandDesk(options.policy, options.fail_first, run, options.failing)
        self.peripherals = reports.new_peripherals(sn) if options.gateway else []

    def uptime(self) -> int:
        return max(0, int(self.clock()) - self.boot_time)

    def report_payloads(self) -> list[tuple[str, reports.Payload]]:
        """This interval's reports; a gateway sometimes flips one peripheral's online flag first."""
        up, sn, rng = self.uptime(), self.sn, self.rng
        out = [
            ("heartbeat", reports.heartbeat(sn, up, self.boot_time, self.options.interval)),
            ("procs", reports.procs(sn, up, rng)),
            ("sys", reports.sys_report(sn, up, rng)),
            ("versions", reports.versions(sn, up)),
        ]
        if self.options.gateway:
            if rng.random() < self.options.toggle_chance:
                self.peripherals = reports.toggle_one(self.peripherals, rng)
            out.append(("peripherals", reports.peripherals_report(sn, up, self.peripherals, rng)))
        return out

    def report_messages(self) -> list[Message]:
        return [(reports.report_topic(self.sn, k), orjson.dumps(body)) for k, body in self.report_payloads()]

    async def on_command(self, payload: bytes) -> Message | None:
        """The answer to publish on `dma/resp/cmd`, or None (unparseable, or `answer` is off)."""
        cmd = parse_command(payload)
        if cmd is None or not self.options.answer:
            return None
        outcome = await self.desk.handle(cmd)
        return reports.RESP_TOPIC, orjson.dumps(response(self.sn, cmd, outcome, self.uptime()))
