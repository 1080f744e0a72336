"""`adapter worker` exits non-zero when its delivery pump or command runner dies, so that its supervisor starts it
again (a worker whose RQ part goes on without them would deliver nothing, silently); the death is logged with its
traceback.

A real worker process on the test Redis, in which a fault is planted (the only change to the shipped code: the
service's loop raises once a key the test sets appears), triggered once the RQ worker listens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import rq_url, store_env
from tests.support.processes import stop
from tests.support.servers import wait_for

TRIGGER = "test:worker-fault"
LAUNCHER = """
import sys
import redis
import {module} as target

trigger = redis.Redis.from_url(sys.argv[1])
step = target.{cls}.{method}

async def faulty(self, *args, **kwargs):
    if trigger.exists({trigger!r}):
        raise RuntimeError("planted fault in the {name}")
    return await step(self, *args, **kwargs)

target.{cls}.{method} = faulty
from adapter.cli import main
sys.exit(main(["worker"]))
"""


@pytest.mark.parametrize(("name", "module", "cls", "method"), [
    ("delivery-pump", "adapter.delivery.pump", "Pump", "_tick"),
    ("command-runner", "adapter.commands.runner", "CommandRunner", "step"),
])
def test_worker_exits_non_zero_when_a_thread_dies(name: str, module: str, cls: str, method: str,
                                                  redis_db: redis.Redis, key_prefix: str, tmp_path: Path) -> None:
    code = LAUNCHER.format(module=module, cls=cls, method=method, trigger=TRIGGER, name=name)
    log_path = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    env.update(store_env(key_prefix))
    trigger = redis.Redis.from_url(rq_url())  # the planted fault's flag: on the one Redis (the cluster's RQ Redis)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, rq_url()], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Listening on" in log_path.read_text() or proc.poll() is not None, timeout=30,
                 what="the RQ worker to listen")
        assert proc.poll() is None, log_path.read_text()
        trigger.set(TRIGGER, "1")
        started = time.monotonic()
        returncode = proc.wait(timeout=30)
        output = log_path.read_text()
        assert returncode == 1, output
        assert time.monotonic() - started < 30
        assert f"{name} died" in output
        assert "Traceback (most recent call last)" in output
        assert f"RuntimeError: planted fault in the {name}" in output
        assert f"exiting with status 1: {name} died" in output
    finally:
        stop(proc)
        trigger.close()
