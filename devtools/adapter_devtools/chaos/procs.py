"""Real processes, each in its own process group with its log file, and a supervisor that restarts the
adapter's processes as systemd or docker-compose would: at once when the suite killed one, after
`restart_delay` when one exited on its own (that is recorded: an `Exit`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from adapter_devtools.chaos.model import Exit


class Proc:
    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: Path | None = None, log: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> None:
        self._close_log()
        if self.log is not None:
            self._out = open(self.log, "ab")  # noqa: SIM115 (closed by stop/start)
            self._out.write(f"--- chaos: start {self.name} at {time.strftime('%H:%M:%S')}\n".encode())
            self._out.flush()
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, start_new_session=True,
                                      stdout=self._out or subprocess.DEVNULL, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def exited(self) -> int | None:
        """The exit status once it has exited (a signal: minus its number), else None."""
        return None if self.popen is None else self.popen.poll()

    def send(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Ends the process group: `sig` first, SIGKILL after `timeout` s."""
        if self.popen is not None and self.popen.poll() is None:
            self.send(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            self.send(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.popen.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class Supervisor:
    """Watches its processes every 0.1 s: one that exited without `kill` asking for it is an `Exit`, and is
    started again after `restart_delay` s."""

    def __init__(self, restart_delay: float = 1.0) -> None:
        self.procs: dict[str, Proc] = {}
        self.exits: list[Exit] = []
        self.restart_delay = restart_delay
        self.lock = threading.Lock()
        self._due: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="chaos-supervisor", daemon=True)

    def add(self, proc: Proc) -> Proc:
        with self.lock:
            self.procs[proc.name] = proc
            proc.start()
        return proc

    def watch(self) -> None:
        self._thread.start()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kills `name` (`sig` to its process group) and starts it again at once."""
        with self.lock:
            proc = self.procs[name]
            proc.stop(sig, timeout=10)
            proc.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            with self.lock:
                now = time.monotonic()
                for name, proc in self.procs.items():
                    code = proc.exited()
                    if code is not None and name not in self._due:
                        self.exits.append(Exit(name, now, code))
                        self._due[name] = now + self.restart_delay
                    if name in self._due and now >= self._due[name]:
                        del self._due[name]
                        proc.start()

    def stop_all(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self.lock:
            for proc in self.procs.values():
                proc.send(signal.SIGTERM)
            for proc in self.procs.values():
                proc.stop()
