"""A redis-server of a test's own that the test can hurt the way /work/shared/FAULTS.md describes: crash and restart
on the same data (AOF, fsync always), CLIENT PAUSE, full (OOM), demoted (REPLICAOF a port nobody answers), BUSY
(a spinning script), MISCONF (a save that fails), LOADING (a restart that loads its data slowly). Each fault is a
context manager: on while inside, undone after.

`FAULTS` names them all, and `with fault_server(name) as server, fault(server, name): …` makes one by its name for
at least a few seconds and returns once Redis takes writes again (tests parametrized over every fault)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.servers import free_port, wait_for


@dataclass
class FaultyRedis:
    port: int
    dir: str
    args: tuple[str, ...]
    aof: bool = True  # its writes survive a restart (fsync always); without, a plain server for faults in place
    proc: subprocess.Popen[bytes] | None = None
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=30)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str, wait: bool = True) -> None:
        """Start it (again) on its data; `extra` arguments for this start only; with `wait`, until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        persistence = ("--appendonly", "yes", "--appendfsync", "always") if self.aof else ("--appendonly", "no")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                                      *persistence, "--save", "", *self.args, *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        wait_for(lambda: self.answers() or self.proc.poll() is not None,  # type: ignore[union-attr]
                 timeout=30, what=f"redis-server on {self.port}")
        if self.proc.poll() is not None:  # type: ignore[union-attr]
            raise RuntimeError(f"redis-server on {self.port} exited with {self.proc.returncode}")  # type: ignore[union-attr]

    def answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.exceptions.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @contextmanager
    def down(self) -> Iterator[None]:
        """Crashed (SIGKILL) while inside; started again on the same AOF after (LOADING while it loads)."""
        self.kill()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def paused(self, ms: int) -> Iterator[None]:
        """CLIENT PAUSE ALL for `ms`: every call blocks until it ends."""
        self.client.execute_command("CLIENT", "PAUSE", ms, "ALL")
        try:
            yield
        finally:
            wait_for(self.answers, timeout=ms / 1000 + 10, what="the pause to end")

    @contextmanager
    def full(self) -> Iterator[None]:
        """OOM on every write that may grow memory; reads work."""
        self.client.config_set("maxmemory-policy", "noeviction")
        self.client.config_set("maxmemory", 1)
        try:
            yield
        finally:
            self.client.config_set("maxmemory", 0)

    @contextmanager
    def demoted(self) -> Iterator[None]:
        """READONLY on writes (a replica of a primary that never answers); blocked reads get UNBLOCKED."""
        self.client.replicaof("127.0.0.1", free_port())
        try:
            yield
        finally:
            self.client.replicaof("NO", "ONE")

    @contextmanager
    def busy(self) -> Iterator[None]:
        """BUSY: a script spins until SCRIPT KILL."""
        spinner = redis.Redis(port=self.port, socket_timeout=60)

        def spin() -> None:
            with suppress(redis.exceptions.RedisError):  # killed
                spinner.eval("while true do end", 0)

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        wait_for(self._busy, timeout=10, what="the script to spin")
        try:
            yield
        finally:
            wait_for(self._kill_script, timeout=10, what="SCRIPT KILL")
            thread.join(10)
            spinner.close()

    def _busy(self) -> bool:
        try:
            self.client.get("x")
        except redis.exceptions.ResponseError as exc:
            return str(exc).startswith("BUSY")
        return False

    def _kill_script(self) -> bool:
        with suppress(redis.exceptions.ResponseError):
            self.client.script_kill()
        return not self._busy()

    @contextmanager
    def misconf(self) -> Iterator[None]:
        """MISCONF on writes: a save point, its directory removed, a BGSAVE that fails."""
        self.client.config_set("save", "3600 1")
        self.client.config_set("stop-writes-on-bgsave-error", "yes")
        self.client.config_set("appendonly", "no")  # the AOF lives in the directory that goes
        shutil.rmtree(self.dir)
        with suppress(redis.exceptions.ResponseError):
            self.client.bgsave()
        wait_for(self._misconf, timeout=10, what="MISCONF")
        try:
            yield
        finally:
            self.client.config_set("stop-writes-on-bgsave-error", "no")
            self.client.config_set("save", "")

    def _misconf(self) -> bool:
        try:
            self.client.set("misconf-probe", 1)
        except redis.exceptions.ResponseError as exc:
            return str(exc).startswith("MISCONF")
        time.sleep(0.05)
        return False


    @contextmanager
    def loading(self, keys: int = 3000, delay_us: int = 1000) -> Iterator[None]:
        """LOADING while inside: `keys` keys written and rewritten into the AOF's RDB part, a crash, and a start that
        loads them `delay_us` each (~3-4 s) and answers LOADING meanwhile; after, until it has loaded."""
        self.client.eval("for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'fill:' .. i, i) end return 1", 0, keys)
        self.client.bgrewriteaof()
        wait_for(self._rewritten, what="the AOF rewrite")
        self.kill()
        self.start("--key-load-delay", str(delay_us), "--loading-process-events-interval-bytes", "1024", wait=False)
        probe = redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0))  # redis-py's default retries LOADING
        try:
            wait_for(lambda: _loading(probe), timeout=10, what="Redis to load its data", interval=0.01)
            yield
        finally:
            probe.close()
            self.wait_ready()

    def _rewritten(self) -> bool:
        info = self.client.info("persistence")
        return info["aof_rewrite_in_progress"] == 0 and info["aof_rewrite_scheduled"] == 0

    def takes_writes(self) -> bool:
        try:
            return bool(self.client.set("fault:probe", "1"))
        except redis.exceptions.RedisError:
            return False


def _loading(probe: redis.Redis) -> bool:
    try:
        probe.ping()
    except redis.exceptions.BusyLoadingError:
        return True
    except redis.exceptions.ConnectionError:
        return False  # not listening yet
    raise AssertionError("Redis answered before it loaded: raise the keys or the delay")


@contextmanager
def faulty_redis(*args: str, aof: bool = True) -> Iterator[FaultyRedis]:
    """A redis-server of a test's own on a free port in a temporary directory (with AOF, fsync always, unless not
    `aof`), killed and removed after: the one helper for every test that must not hurt the shared test server."""
    server = FaultyRedis(free_port(), tempfile.mkdtemp(prefix="redis-faults-"), args, aof)
    try:
        server.start()
        yield server
    finally:
        server.client.close()
        server.kill()
        shutil.rmtree(server.dir, ignore_errors=True)


@contextmanager
def redis_server(*args: str) -> Iterator[FaultyRedis]:
    """A plain throwaway server (no AOF), for faults made in place (READONLY, OOM, BUSY, MISCONF, pauses)."""
    with faulty_redis(*args, aof=False) as server:
        yield server


@dataclass(frozen=True)
class Fault:
    name: str
    args: tuple[str, ...] = ()  # what the server needs from its start for this fault


FAULTS = {f.name: f for f in (
    Fault("restart"),  # SIGKILL, start again on the same AOF
    Fault("pause"),  # CLIENT PAUSE 5 s ALL
    Fault("oom"),  # maxmemory 1
    Fault("readonly"),  # REPLICAOF a port nobody listens on (a Sentinel demotion), then NO ONE
    Fault("misconf"),  # a BGSAVE that fails
    Fault("busy", ("--busy-reply-threshold", "20")),  # a script that spins, then SCRIPT KILL
    Fault("loading"),  # a restart that loads its data slowly
)}


@contextmanager
def fault_server(name: str) -> Iterator[FaultyRedis]:
    """A server that fault `name` can be made on."""
    with faulty_redis(*FAULTS[name].args) as server:
        yield server


@contextmanager
def fault(server: FaultyRedis, name: str, hold: float = 3.0) -> Iterator[None]:
    """Fault `name` for the body and at least `hold` s (a pause: 5 s; LOADING: as long as the load takes); returns
    once Redis takes writes again."""
    made = {"restart": server.down, "pause": lambda: server.paused(5000), "oom": server.full,
            "readonly": server.demoted, "misconf": server.misconf, "busy": server.busy, "loading": server.loading}
    with made[name]():
        yield
        if name not in ("pause", "loading"):
            time.sleep(hold)  # the fault's length: what the test makes, not a wait for something
    wait_for(server.takes_writes, timeout=30, what="Redis to take writes again")
