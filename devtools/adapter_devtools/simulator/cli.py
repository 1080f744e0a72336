"""Command line of the device simulator: options into a `SimConfig`, then run until done or signalled."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from adapter_devtools.simulator.commands import DEFAULT_ALLOW
from adapter_devtools.simulator.runner import SimConfig, Simulator

log = logging.getLogger(__name__)


def _bounded(kind: Callable[[str], float], low: float, high: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < low or (high is not None and value > high):
            top = "" if high is None else f" and {high:g}"
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g}{top}")
        return value

    return parse


def _allow_list(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(",") if word.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adapter simulate", description="Simulate N DMA devices over MQTT.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--count", type=_bounded(int, 1), default=1, help="number of devices")
    p.add_argument("--prefix", default="SIM", help="sn prefix; sns are prefix + zero-padded index from 1")
    p.add_argument("--interval", "--dur", dest="interval", type=_bounded(float, 0.05), default=5.0,
                   help="report interval in seconds (the heartbeat's dur)")
    p.add_argument("--gateways", type=_bounded(float, 0, 1), default=0.0, help="share of gateways, 0..1")
    p.add_argument("--drop-rate", type=_bounded(float, 0, 1), default=0.0,
                   help="chance per interval of dropping the connection (no DISCONNECT) and reconnecting")
    p.add_argument("--reconnect-delay", type=_bounded(float, 0), default=1.0,
                   help="seconds before a reconnect")
    p.add_argument("--allow", type=_allow_list, default=DEFAULT_ALLOW,
                   help="comma list of allowed sh commands")
    p.add_argument("--sh-timeout", type=_bounded(float, 0.01), default=5.0,
                   help="seconds an sh command may run")
    p.add_argument("--username", default=None, help="MQTT username (default: the sn)")
    p.add_argument("--password", default=None)
    p.add_argument("--duration", type=_bounded(float, 0), default=None,
                   help="seconds to run (default: forever)")
    p.add_argument("--fail-first", type=_bounded(int, 0), default=0,
                   help="answer err to the first K receptions of each command id")
    p.add_argument("--failure-rate", type=_bounded(float, 0, 1), default=0.0,
                   help="share of devices that answer err to every command (exactly floor(count x rate), spread "
                        "evenly: 0.2 makes every 5th device fail)")
    p.add_argument("--no-answer", action="store_true", help="never answer commands")
    p.add_argument("--keepalive", type=_bounded(int, 5), default=60)
    p.add_argument("--persistent-session", action="store_true", help="connect with clean_session=false")
    p.add_argument("--seed", type=int, default=None, help="seed the random reports and drops")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def parse_config(argv: list[str] | None = None) -> tuple[SimConfig, str]:
    ns = build_parser().parse_args(argv)
    config = SimConfig(
        host=ns.host, port=ns.port, count=int(ns.count), prefix=ns.prefix, interval=ns.interval,
        gateways=ns.gateways, drop_rate=ns.drop_rate, reconnect_delay=ns.reconnect_delay, allow=ns.allow,
        sh_timeout=ns.sh_timeout, username=ns.username, password=ns.password, duration=ns.duration,
        fail_first=int(ns.fail_first), failure_rate=ns.failure_rate, answer=not ns.no_answer,
        keepalive=int(ns.keepalive),
        clean_session=not ns.persistent_session, seed=ns.seed,
    )
    return config, ns.log_level


async def _run(config: SimConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    sim = Simulator(config)
    await sim.run(stop)
    log.info("stopped: %s", sim.stats())


def main(argv: list[str] | None = None) -> int:
    config, level = parse_config(argv)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(config))
    return 0
