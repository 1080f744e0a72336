"""N simulated devices on one asyncio loop: reports every interval, commands, random drops, shutdown.

Scaling: every device is one paho client driven by `Link` on the same loop and thread (no paho
network threads), one report task per online device and a single keepalive ticker, so a few thousand
devices cost a few thousand sockets (mind `ulimit -n`) and little CPU. Initial connects are blocking
TCP connects, made in batches that yield to the loop; commands run in the default thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from dataclasses import dataclass

from adapter_devtools.simulator.agent import Agent, AgentOptions
from adapter_devtools.simulator.commands import DEFAULT_ALLOW, ShPolicy
from adapter_devtools.simulator.link import Link, LinkSettings

log = logging.getLogger(__name__)

CONNECT_BATCH = 50
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    count: int = 1
    prefix: str = "SIM"
    interval: float = 5.0
    gateways: float = 0.0
    drop_rate: float = 0.0
    reconnect_delay: float = 1.0
    allow: tuple[str, ...] = DEFAULT_ALLOW
    sh_timeout: float = 5.0
    username: str | None = None
    password: str | None = None
    duration: float | None = None
    fail_first: int = 0
    failure_rate: float = 0.0
    answer: bool = True
    keepalive: int = 60
    clean_session: bool = True
    seed: int | None = None


def device_sns(prefix: str, count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def gateway_count(count: int, share: float) -> int:
    """How many devices are gateways; the first ones are."""
    return max(0, min(count, round(count * share)))


class Device:
    """An agent on a link: reports while subscribed, answers commands, sometimes drops."""

    def __init__(self, agent: Agent, settings: LinkSettings, drop_rate: float,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.agent = agent
        self.link = Link(agent.sn, settings, self, loop)
        self.drop_rate = drop_rate
        self.loop = loop
        self.reports = 0
        self.answers = 0
        self.online = False
        self._reporter: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def on_ready(self) -> None:
        self.online = True
        self._cancel_reporter()
        self._reporter = self.loop.create_task(self._report_loop())

    def on_down(self) -> None:
        self.online = False
        self._cancel_reporter()

    def on_command(self, payload: bytes) -> None:
        task = self.loop.create_task(self._answer(payload))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def stop(self) -> None:
        self._cancel_reporter()
        for task in self._pending:
            task.cancel()
        self.link.stop()

    async def _report_loop(self) -> None:
        while True:
            for topic, payload in self.agent.report_messages():
                self.link.publish(topic, payload, qos=0)
            self.reports += 1
            interval, rng = self.agent.options.interval, self.agent.rng
            if self.drop_rate and rng.random() < self.drop_rate:
                await asyncio.sleep(rng.uniform(0.1, 1.0) * interval)
                log.info("%s: dropping the connection", self.agent.sn)
                self.link.drop()
                return
            await asyncio.sleep(interval)

    async def _answer(self, payload: bytes) -> None:
        answer = await self.agent.on_command(payload)
        if answer is not None:
            self.link.publish(*answer, qos=1)
            self.answers += 1

    def _cancel_reporter(self) -> None:
        if self._reporter is not None and self._reporter is not asyncio.current_task():
            self._reporter.cancel()
        self._reporter = None


def failing_device(i: int, rate: float) -> bool:
    """Whether device `i` (from 0) is one of the `rate` share that fail every command: exactly
    floor(count * rate) of the first `count` devices, spread evenly (rate 0.2: the 5th, 10th, 15th…)."""
    return math.floor((i + 1) * rate + 1e-9) > math.floor(i * rate + 1e-9)


def build_agents(config: SimConfig) -> list[Agent]:
    policy = ShPolicy(allow=frozenset(config.allow), timeout=config.sh_timeout)
    gateways = gateway_count(config.count, config.gateways)
    agents = []
    for i, sn in enumerate(device_sns(config.prefix, config.count)):
        options = AgentOptions(interval=config.interval, gateway=i < gateways, policy=policy,
                               fail_first=config.fail_first, answer=config.answer,
                               failing=failing_device(i, config.failure_rate))
        rng = random.Random(f"{config.seed}:{sn}") if config.seed is not None else random.Random()
        agents.append(Agent(sn, options, rng))
    return agents


def link_settings(config: SimConfig) -> LinkSettings:
    return LinkSettings(host=config.host, port=config.port, keepalive=config.keepalive,
                        username=config.username, password=config.password,
                        clean_session=config.clean_session, reconnect_delay=config.reconnect_delay)


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.devices: list[Device] = []

    def stats(self) -> dict[str, int]:
        d = self.devices
        return {
            "devices": len(d),
            "online": sum(x.online for x in d),
            "connects": sum(x.link.connects for x in d),
            "drops": sum(x.link.drops for x in d),
            "reports": sum(x.reports for x in d),
            "answers": sum(x.answers for x in d),
        }

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set or `config.duration` seconds have passed, then disconnect all."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        settings = link_settings(self.config)
        self.devices = [Device(a, settings, self.config.drop_rate, loop) for a in build_agents(self.config)]
        ticker = loop.create_task(self._keepalive())
        try:
            await self._start_all(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.duration)
        finally:
            ticker.cancel()
            await self._stop_all()

    async def _start_all(self, stop: asyncio.Event) -> None:
        for i, device in enumerate(self.devices):
            if stop.is_set():
                return
            device.link.start()
            if i % CONNECT_BATCH == CONNECT_BATCH - 1:
                await asyncio.sleep(0)
        log.info("started %d devices (%s..)", len(self.devices), self.config.prefix)

    async def _keepalive(self) -> None:
        while True:
            for device in self.devices:
                device.link.misc()
            await asyncio.sleep(1.0)

    async def _stop_all(self) -> None:
        for device in self.devices:
            device.stop()
        closing = [device.link.closed.wait() for device in self.devices]
        try:
            await asyncio.wait_for(asyncio.gather(*closing), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("some devices did not disconnect within %.0fs", STOP_TIMEOUT)
