"""Real processes for end-to-end tests: started in their own process group, always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.fake_emqx import KEY, SECRET
from tests.support.servers import wait_for


@contextmanager
def adapter_process(*args: str, env: dict[str, str], log_path: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "adapter", *args], env={**os.environ, **env},
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)
        if log_path and not isinstance(out, int):
            out.close()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@contextmanager
def worker_process(redis_url: str, emqx_url: str, log_path: Path, env: dict[str, str] | None = None, *,
                   append: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """`adapter worker` on `redis_url`, publishing to the fake EMQX at `emqx_url` (1 s timeout, no ack timeout to
    speak of), with `env` on top; yielded once its RQ worker listens (with `append`, once it says so again in the
    log it shares with an earlier worker); always stopped."""
    listening = log_path.read_text().count("Listening on") if append and log_path.exists() else 0
    full = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    full |= {"ADAPTER_REDIS_URL": redis_url, "ADAPTER_EMQX_API_URL": f"{emqx_url}/api/v5",
             "ADAPTER_EMQX_API_KEY": KEY, "ADAPTER_EMQX_API_SECRET": SECRET, "ADAPTER_EMQX_TIMEOUT": "1",
             "ADAPTER_COMMAND_ACK_TIMEOUT": "600"} | (env or {})
    with open(log_path, "ab" if append else "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "adapter", "worker"], env=full, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: log_path.read_text().count("Listening on") > listening or proc.poll() is not None,
                 timeout=30, what="the RQ worker to listen")
        assert proc.poll() is None, log_path.read_text()
        yield proc
    finally:
        stop(proc)
