"""Downlink commands of a simulated DMA agent (docs/design.md §7): parsing, the `sh` allow-list, the answer.

`execute` is synchronous (it may run a subprocess, never through a shell); callers on an event loop
run it in a thread. Everything else here is pure.
"""

from __future__ import annotations

import base64
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_ALLOW = ("whoami", "uptime", "date", "echo", "hostname", "ls", "uname", "id")
MAX_OUTPUT = 64 * 1024


@dataclass(frozen=True)
class Command:
    id: int | str
    sender: str
    command: str
    method: str
    body: Any
    detached: Any = None
    expires: Any = None
    time: Any = None

    @property
    def key(self) -> str:
        return str(self.id)


@dataclass(frozen=True)
class Outcome:
    status: str
    exestatus: str
    msg: str = ""
    result: str = ""

    @classmethod
    def ok(cls, result: str = "") -> Outcome:
        return cls("ok", "ok", "", result)

    @classmethod
    def err(cls, msg: str, result: str = "") -> Outcome:
        return cls("err", "err", msg, result)


@dataclass(frozen=True)
class ShPolicy:
    allow: frozenset[str] = frozenset(DEFAULT_ALLOW)
    timeout: float = 5.0


def parse_command(payload: bytes) -> Command | None:
    """A command from a `dma/cmd/{sn}` payload; None when there is no id to answer to."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), int | str) or isinstance(doc["id"], bool):
        return None
    return Command(
        id=doc["id"],
        sender=str(doc.get("from") or ""),
        command=str(doc.get("command") or ""),
        method=str(doc.get("method") or ""),
        body=doc.get("d"),
        detached=doc.get("detached"),
        expires=doc.get("expires"),
        time=doc.get("time"),
    )


def sh_argv(cmd: Command, policy: ShPolicy) -> list[str] | Outcome:
    """The argv to run for an `sh` command, or the refusal to answer instead."""
    shcmd = cmd.body.get("shcmd") if isinstance(cmd.body, dict) else None
    if not isinstance(shcmd, str) or not shcmd.strip():
        return Outcome.err("missing shcmd")
    try:
        argv = shlex.split(shcmd)
    except ValueError as exc:
        return Outcome.err(f"bad shcmd: {exc}")
    if not argv or argv[0] not in policy.allow:
        return Outcome.err("not allowed")
    return argv


def run_argv(argv: list[str], timeout: float) -> Outcome:
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return Outcome.err(f"timeout after {timeout:g}s")
    except OSError as exc:
        return Outcome.err(f"cannot run: {exc.strerror or exc}")
    result = base64.b64encode(done.stdout[:MAX_OUTPUT]).decode("ascii")
    if done.returncode == 0:
        return Outcome.ok(result)
    stderr = done.stderr[-512:].decode("utf-8", "replace").strip()
    return Outcome.err(f"exit {done.returncode}: {stderr}".rstrip(": "), result)


def execute(cmd: Command, policy: ShPolicy) -> Outcome:
    if cmd.command != "sh":
        return Outcome.err("unknown command")
    argv = sh_argv(cmd, policy)
    return argv if isinstance(argv, Outcome) else run_argv(argv, policy.timeout)


def response(sn: str, cmd: Command, outcome: Outcome, uptime: int) -> dict[str, Any]:
    """The `dma/resp/cmd` body; `id` goes back exactly as received (number or string)."""
    o = outcome
    d = {"exestatus": o.exestatus, "msg": o.msg, "result": o.result, "status": o.status}
    return {
        "id": cmd.id,
        "sn": sn,
        "command": cmd.command,
        "from": cmd.sender,
        "d": d,
        "status": outcome.status,
        "time": uptime,
    }
