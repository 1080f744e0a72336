"""The command line fails with one line and a non-zero exit, never a traceback (foundation, item 2), and manages
users (item 5)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from tests.conftest import store_env

DEAD_REDIS = "redis://127.0.0.1:1/0"


def adapter(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    return subprocess.run([sys.executable, "-m", "adapter", *args], env={**clean, **env}, input=stdin,
                          capture_output=True, text=True, timeout=60, cwd="/")


@pytest.mark.parametrize(("args", "env", "fragment"), [
    (("api",), {}, "ADAPTER_INGEST_TOKEN is required"),
    (("api",), {"ADAPTER_INGEST_TOKEN": "t", "ADAPTER_REDIS_URL": DEAD_REDIS}, "does not answer"),
    (("worker", "--burst"), {"ADAPTER_REDIS_URL": DEAD_REDIS}, "does not answer"),
    (("user", "list"), {"ADAPTER_REDIS_URL": DEAD_REDIS}, "does not answer"),
    (("api",), {"ADAPTER_TOKEN_TTL": "soon"}, "ADAPTER_TOKEN_TTL must be an integer"),
    (("api",), {"ADAPTER_INGEST_TOKEN": "t", "ADAPTER_MQTT_CLIENTS": "not json", "ADAPTER_REDIS_URL": DEAD_REDIS},
     "ADAPTER_MQTT_CLIENTS must be a JSON list"),
    (("api",), {"ADAPTER_REDIS_URL": "redis+cluster://h1:7001,h2:port", "ADAPTER_RQ_REDIS_URL": DEAD_REDIS},
     "'h2:port' is not a host:port seed"),
    (("worker", "--burst"), {"ADAPTER_REDIS_URL": "redis+cluster://h1:7001,,h2:7002",
                             "ADAPTER_RQ_REDIS_URL": DEAD_REDIS}, "'' is not a host:port seed"),
    (("user", "list"), {"ADAPTER_REDIS_URL": "redis+cluster://h1:7001/3", "ADAPTER_RQ_REDIS_URL": DEAD_REDIS},
     "database 0 only"),
    (("api",), {"ADAPTER_INGEST_TOKEN": "t", "ADAPTER_REDIS_URL": "redis+cluster://127.0.0.1:1,127.0.0.1:2",
                "ADAPTER_RQ_REDIS_URL": DEAD_REDIS}, "does not answer"),
])
def test_bad_configuration_is_one_line(args: tuple[str, ...], env: dict[str, str], fragment: str) -> None:
    done = adapter(*args, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [("api",), ("worker", "--burst"), ("user", "list")])
def test_the_redis_password_is_never_printed(args: tuple[str, ...]) -> None:
    dead = "redis://app:s3cret-pw@127.0.0.1:1/0"
    done = adapter(*args, env={"ADAPTER_INGEST_TOKEN": "t", "ADAPTER_REDIS_URL": dead})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "does not answer" in lines[0] and "redis://app:***@127.0.0.1:1/0" in lines[0]
    assert "s3cret-pw" not in done.stderr + done.stdout


def test_api_needs_the_admin_password_while_no_user_exists(redis_db: redis.Redis, key_prefix: str) -> None:
    done = adapter("api", env={"ADAPTER_INGEST_TOKEN": "t", **store_env(key_prefix)})
    assert done.returncode == 2
    assert "ADAPTER_ADMIN_PASSWORD is required" in done.stderr


def test_user_add_list_passwd_del(redis_db: redis.Redis, key_prefix: str) -> None:
    env = store_env(key_prefix)
    assert adapter("user", "add", "ops", "--role", "viewer", env=env, stdin="ops-password\n").returncode == 0
    assert adapter("user", "list", env=env).stdout.split() == ["ops", "viewer"]
    again = adapter("user", "add", "ops", env=env, stdin="ops-password\n")
    assert again.returncode == 1 and "exists" in again.stderr
    assert adapter("user", "passwd", "ops", env=env, stdin="new-password\n").returncode == 0
    short = adapter("user", "passwd", "ops", env=env, stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    assert adapter("user", "del", "ops", env=env).returncode == 0
    assert adapter("user", "list", env=env).stdout == ""


# `python -c` with the dev tools hidden from imports, as in the production image or a service-only venv
WITHOUT_DEVTOOLS = """
import sys

class HideDevtools:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "adapter_devtools":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HideDevtools())
from adapter.cli import main
sys.exit(main(sys.argv[1:]))
"""


def adapter_without_devtools(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTER_")}
    return subprocess.run([sys.executable, "-c", WITHOUT_DEVTOOLS, *args], env=clean, capture_output=True,
                          text=True, timeout=60, cwd="/")


@pytest.mark.parametrize("args", [("dev",), ("dev", "--port", "0"), ("devbroker", "--help"), ("simulate",)])
def test_dev_commands_without_the_dev_tools_say_so_in_one_line(args: tuple[str, ...]) -> None:
    done = adapter_without_devtools(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"adapter {args[0]} needs the dev tools (no module named 'adapter_devtools'): "
        "pip install -e ./devtools (make install, make run and make test do this)"]


def test_the_service_commands_work_without_the_dev_tools() -> None:
    helped = adapter_without_devtools("--help")
    assert helped.returncode == 0 and "devbroker" in helped.stdout and "Traceback" not in helped.stderr
    api = adapter_without_devtools("api")  # gets as far as its configuration
    lines = api.stderr.strip().splitlines()
    assert api.returncode == 2 and len(lines) == 1 and lines[0].startswith("adapter: ADAPTER_INGEST_TOKEN is required")


def test_dev_commands_with_the_dev_tools_reach_them() -> None:
    done = adapter("devbroker", "--help", env={})
    assert done.returncode == 0 and "--mqtt-port" in done.stdout
