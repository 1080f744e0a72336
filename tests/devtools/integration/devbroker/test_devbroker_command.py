"""`adapter devbroker` as a real process: ready line, working ports, clean exit on SIGTERM / Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from adapter_devtools.devbroker import DevBrokerConfig, serve
from tests.devtools.integration.devbroker.harness import Receiver, raw_client

READY = re.compile(r"devbroker: MQTT on 127\.0\.0\.1:(\d+), "
                   r"REST API on (http://127\.0\.0\.1:\d+)/api/v5, events to (.*)")


@contextmanager
def devbroker_process(args: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], re.Match[str]]]:
    env = {**os.environ, "ADAPTER_EMQX_API_KEY": "cli-key", "ADAPTER_EMQX_API_SECRET": "cli-secret",
           "ADAPTER_INGEST_TOKEN": "cli-token", "PYTHONPATH": str(Path(__file__).resolve().parents[4])}
    proc = subprocess.Popen([sys.executable, *args, "--mqtt-port", "0", "--api-port", "0"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        ready = READY.fullmatch(line.strip())
        assert ready, f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield proc, ready
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_runs_until_signalled_then_exits_0(tmp_path: Path, receiver: Receiver, sig: signal.Signals) -> None:
    args = ["-m", "adapter_devtools.devbroker", "--webhook", receiver.url]
    with devbroker_process(args, tmp_path) as (proc, ready):
        mqtt_port, api = int(ready.group(1)), ready.group(2)
        assert httpx.get(f"{api}/api/v5/nodes", auth=("cli-key", "cli-secret")).status_code == 200
        with raw_client(mqtt_port, "dev-cli"):
            [came] = receiver.wait("client.connected", "dev-cli")
            proc.send_signal(sig)
            assert proc.wait(timeout=10) == 0
    assert came["node"] == "devbroker@127.0.0.1"
    [gone] = receiver.wait("client.disconnected", "dev-cli")
    assert gone["reason"] == "shutdown"
    assert receiver.posted[0].headers["authorization"] == "Bearer cli-token"


def test_the_adapter_command_reaches_it(tmp_path: Path) -> None:
    with devbroker_process(["-m", "adapter", "devbroker", "--webhook", ""], tmp_path) as (proc, ready):
        assert ready.group(3) == "nowhere"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


async def test_serve_runs_until_cancelled_and_leaves_nothing_behind() -> None:
    before = asyncio.all_tasks()  # this test's own and the plugin's runner task
    ready = asyncio.Event()
    config = DevBrokerConfig(mqtt_port=0, api_port=0, api_key="k", api_secret="s")
    task = asyncio.create_task(serve(config, ready))
    await asyncio.wait_for(ready.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[4]), "ADAPTER_EMQX_API_KEY": "k"}
        done = subprocess.run([sys.executable, "-m", "adapter_devtools.devbroker", "--api-port", str(port),
                               "--mqtt-port", "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "adapter devbroker:" in done.stderr
