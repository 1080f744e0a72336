"""`adapter devbroker [--mqtt-port M] [--api-port A] [--webhook URL] [--auth-url URL]` (docs/design.md §14).

Reads ADAPTER_INGEST_TOKEN / ADAPTER_EMQX_API_KEY / ADAPTER_EMQX_API_SECRET from the environment (and
`.env`), prints one line with the bound addresses once ready, and exits 0 on Ctrl-C or SIGTERM after
a clean shutdown. `--webhook ""` builds events without sending them. `--auth-url` (off by default)
authenticates and authorizes clients through `{URL}/authn` and `{URL}/authz` as EMQX's HTTP
authn/authz does (e.g. `--auth-url http://127.0.0.1:8000/emqx`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from adapter.settings import read_dotenv
from adapter_devtools.devbroker.config import DEFAULT_WEBHOOK, DevBrokerConfig
from adapter_devtools.devbroker.runtime import DevBrokerRuntime


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adapter devbroker",
                                description="EMQX-faithful dev broker: MQTT 3.1.1, webhook events, EMQX REST subset")
    p.add_argument("--mqtt-port", type=int, default=1883, help="MQTT listener port (0: any free port)")
    p.add_argument("--api-port", type=int, default=18083, help="REST API port (0: any free port)")
    p.add_argument("--webhook", default=DEFAULT_WEBHOOK, help="where events are POSTed ('' : nowhere)")
    p.add_argument("--auth-url", default="",
                   help="EMQX-style HTTP authn/authz base URL, e.g. http://127.0.0.1:8000/emqx ('': off)")
    p.add_argument("--host", default="127.0.0.1", help="address both listeners bind to")
    return p


def config_from(args: argparse.Namespace, environ: dict[str, str]) -> DevBrokerConfig:
    return DevBrokerConfig.from_env(environ, mqtt_host=args.host, mqtt_port=args.mqtt_port, api_host=args.host,
                                    api_port=args.api_port, ingest_url=args.webhook or None,
                                    auth_url=args.auth_url or None, node=f"devbroker@{args.host}")


def banner(runtime: DevBrokerRuntime) -> str:
    config = runtime.config
    target = config.ingest_url or "nowhere"
    auth = f", auth by {config.auth_url}" if config.auth_url else ""
    return (f"devbroker: MQTT on {config.mqtt_host}:{runtime.mqtt_port}, "
            f"REST API on http://{config.api_host}:{runtime.api_port}/api/v5, events to {target}{auth}")


async def run(config: DevBrokerConfig) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = DevBrokerRuntime(config)
    try:
        await runtime.start()
        print(banner(runtime), flush=True)
        await stop.wait()
    finally:
        await runtime.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    environ = {**read_dotenv(Path(".env")), **os.environ}
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run(config_from(args, environ)))
    except OSError as exc:
        print(f"adapter devbroker: {exc}", file=sys.stderr)
        return 1
    return 0
