"""`adapter store migrate`: the checks, the phases and their progress, the resume, the verification
(docs/cluster.md "Moving a store between layouts").

Phases, recorded in the target's `migration()` hash (the cursor) as they end: `ids` (a cluster target's new command
ids) -> `walk` (every source key, a SCAN page at a time; the node and SCAN cursor are saved after each page) ->
`rebuild` (per target, counters, replicas, day counters) -> `verify` -> the meta hash -> the cursor is deleted. A
rerun of the same command reads the cursor and goes on from there; while the cursor exists every process of the
service refuses the target (`check_layout`)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from adapter.migrate import copy, finish, verify
from adapter.migrate.stores import Store, open_source, open_store, refuse, survey
from adapter.settings import Settings
from adapter.store.types import as_text

PHASES = ("ids", "walk", "rebuild", "verify", "done")


@dataclass(frozen=True)
class Options:
    source: str
    target: str
    partitions: int = Settings.cluster_partitions
    prefix: str = Settings.key_prefix
    batch: int = 1000
    dry_run: bool = False
    verify_only: bool = False
    yes_stopped: bool = False


class Progress:
    def __init__(self, total: int, out: TextIO, every: float = 2.0) -> None:
        self.total, self.out, self.every = total, out, every
        self.started = self.last = time.monotonic()
        self.done = self.base = 0

    def tell(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            rate = (done - self.base) / max(now - self.started, 1e-9)
            share = f" ({100 * done / self.total:.1f} %)" if self.total else ""
            print(f"migrate: walk {done}/{self.total} keys{share}, {rate:,.0f} keys/s", file=self.out, flush=True)



def run(opts: Options, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The table on `out` (stdout), the progress on `err` (stderr); 0 done, 1 the counts differ."""
    out, err = out or sys.stdout, err or sys.stderr
    source = open_source(opts.source, opts.prefix)
    try:
        target = open_store(opts.target, opts.prefix, opts.partitions, "--to")
    except BaseException:
        source.close()
        raise
    try:
        if opts.verify_only:
            return _verify(source, target, out)
        return _migrate(source, target, opts, out, err)
    finally:
        source.close()
        target.close()


def _identity(source: Store, target: Store) -> dict[str, str]:
    return {"source": source.name, "from": str(source.keys.cluster_partitions),
            "to": str(target.keys.cluster_partitions)}


def _migrate(source: Store, target: Store, opts: Options, out: TextIO, err: TextIO) -> int:
    if (source.keys.cluster, source.keys.cluster_partitions) == (target.keys.cluster, target.keys.cluster_partitions):
        raise refuse(f"--from and --to are both {source.layout}: nothing to migrate (a copy is not a migration)")
    if source.any_key() is None:
        raise refuse(f"--from {source.name} holds no store under the prefix {opts.prefix!r}")
    state = {as_text(k): as_text(v) for k, v in target.client.hgetall(target.keys.migration()).items()}
    if state:
        mine = _identity(source, target)
        if any(state.get(k) != v for k, v in mine.items()):
            raise refuse(f"--to {target.name} holds an unfinished migration of another store or layout "
                         f"({target.keys.migration()}: from {state.get('source')}, partitions {state.get('from')} -> "
                         f"{state.get('to')}); run that one again, or empty the target")
    elif (found := target.any_key()) is not None:
        raise refuse(f"--to {target.name} already holds a store under the prefix {opts.prefix!r} ({found})")
    seen = survey(source, target.keys)
    if seen.live:
        raise refuse(f"a process of the service is running on --from ({seen.live}): stop every API process and worker "
                     f"first (leases expire within seconds of a clean stop)")
    if seen.backlog:
        raise refuse(f"--from has {seen.backlog} undelivered deliveries ({seen.backlog_key}): stop the ingest, let the "
                     f"workers drain the delivery streams (delivery_backlog 0 on /metrics), then stop them")
    if seen.pending_batch:
        raise refuse(f"a rollout has a batch of commands dispatched but not written ({seen.pending_batch}, field "
                     f"pending: their ids are reserved in the old layout): start one worker until its driver has "
                     f"written them, then stop it")
    if not opts.dry_run and not opts.yes_stopped:
        raise refuse("an API process leaves no mark in Redis to check: stop every API process and worker on --from, "
                     "then run again with --yes-stopped")
    print(f"migrate: {source.name} ({source.layout}) -> {target.name} ({target.layout}), prefix {opts.prefix!r}: "
          f"{seen.keys} keys", file=err)
    if seen.unknown:
        print(f"migrate: {seen.unknown} keys under the prefix match no key of the service and are not copied "
              f"(e.g. {seen.unknown_sample})", file=err)
    if opts.dry_run:
        print("migrate: dry run: nothing written", file=err)
        return 0
    if not state:
        target.client.hset(target.keys.migration(), mapping={**_identity(source, target), "phase": "ids",
                                                             "node": "0", "cursor": "0", "done": "0"})
        state = {"phase": "ids", "node": "0", "cursor": "0", "done": "0"}
    started = time.monotonic()
    ids = finish.command_ids_map(source, target, written=state["phase"] != "ids")
    if state["phase"] == "ids":
        _phase(target, "walk")
        state["phase"] = "walk"
    if state["phase"] == "walk":
        _walk(source, target, ids, opts, seen.keys, state, err)
        _phase(target, "rebuild")
        state["phase"] = "rebuild"
    if state["phase"] == "rebuild":
        print("migrate: rebuilding counters, attempts, dead letters, replicas", file=err)
        for name in finish.target_names(source):
            finish.rebuild_target(source, target, name)
        finish.sum_counters(source, target)
        finish.write_replicas(target)
        finish.write_counters(source, target, ids)
        _phase(target, "verify")
    code = _verify(source, target, out)
    if code:
        print("migrate: the counts differ: the target is left unfinished (its migration cursor stays)", file=err)
        return code
    finish.write_meta(target)
    target.client.delete(target.keys.migration())
    wall = time.monotonic() - started
    print(f"migrate: done in {wall:.1f} s ({seen.keys / max(wall, 1e-9):,.0f} keys/s); ids of "
          f"{len(ids)} commands renumbered" + (f" (old -> new: {target.keys.migration_ids()})" if ids else ""),
          file=err)
    return 0


def _phase(target: Store, phase: str) -> None:
    target.client.hset(target.keys.migration(), "phase", phase)


def _walk(source: Store, target: Store, ids: dict[int, int], opts: Options, total: int, state: dict[str, str],
          err: TextIO) -> None:
    node, cursor, done = int(state.get("node", 0)), int(state.get("cursor", 0)), int(state.get("done", 0))
    progress = Progress(total, err)
    progress.base = done
    nodes = len(source.nodes())
    dropped = 0
    while node < nodes:
        cursor, found = source.scan(node, cursor, opts.batch)
        page = copy.copy_page(source, target, found, ids)
        dropped += page.dropped_commands
        done += len(found)
        if cursor == 0:
            node += 1
        target.client.hset(target.keys.migration(), mapping={"node": str(node), "cursor": str(cursor),
                                                             "done": str(done)})
        progress.tell(done)
    progress.tell(done, force=True)
    if dropped:
        print(f"migrate: {dropped} commands not in any command index were left out", file=err)


def _verify(source: Store, target: Store, out: TextIO) -> int:
    lines, ok = verify.compare(verify.census(source), verify.census(target))
    print("\n".join(lines), file=out)
    return 0 if ok else 1
