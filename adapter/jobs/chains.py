"""Periodic RQ jobs as one chain each, however many workers run: a run schedules the next with `enqueue_in`.

`Keys.job_chain(name)` holds the id of the chain's next run. Only a compare-and-set on that key may start a
run: the run that ends takes the key from its own id to its successor's, a worker that starts (or its
guard, every minute) takes it from a broken id (its job gone, failed or finished) to a new one. Two workers
that find no chain at once both try the same compare-and-set; one wins, the other schedules nothing.

The key is set before the job is scheduled, so for a moment it names a job that does not exist yet; ids
carry their creation time (ms), and a missing job is taken as broken only once its id is `GRACE_MS` old.
A run is scheduled every `interval` seconds after the previous one ended, whatever its outcome
(see adapter/jobs/entry.py). rq's own `Repeat` takes a finite count, so it does not fit a chain without end.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from adapter.store.keys import Keys
from adapter.store.types import as_text

GRACE_MS = 30_000
ALIVE = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED})

# KEYS[1] the chain key; ARGV[1] the id expected there ("" for none), ARGV[2] the new id
_CAS = """
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Periodic:
    name: str  # letters, digits and '-' (it is part of RQ job ids)
    func: str  # the RQ entry point, e.g. "adapter.jobs.entry.reconcile"
    interval: int  # s between the end of a run and the start of the next
    timeout: int = 600  # s a run may take before RQ stops it


def id_part(text: str) -> str:
    """`text` fit for an RQ job id, which allows only letters, digits, `_` and `-` (a key prefix may hold more)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def new_id(keys: Keys, name: str, now_ms: int | None = None) -> str:
    """An RQ job id that says when it was made."""
    at = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{id_part(keys.prefix)}-{name}-{at}-{secrets.token_hex(4)}"


def made_at(job_id: str) -> int | None:
    parts = job_id.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _swap(conn: redis.Redis, key: str, expected: str, new: str) -> bool:
    return bool(conn.eval(_CAS, 1, key, expected, new))


def is_alive(conn: redis.Redis, job_id: str, now_ms: int) -> bool:
    try:
        status = Job.fetch(job_id, connection=conn).get_status(refresh=False)
    except NoSuchJobError:
        at = made_at(job_id)
        return at is not None and now_ms - at < GRACE_MS
    return status in ALIVE


def _schedule(queue: Queue, p: Periodic, job_id: str, delay: float) -> None:
    """The run `job_id`, due in `delay` s. Not `enqueue_in`: rq 2.12's ScheduledJobRegistry.schedule ignores the
    pipeline it is given and adds the id to the registry before the job's hash is written; another worker's
    scheduler that read the registry in between found no job, dropped the id, and the chain stood still until its
    guard (GRACE_MS, GUARD_EVERY) started it again. `unique=True` schedules in one Lua script."""
    job = queue.create_job(p.func, job_id=job_id, status=JobStatus.SCHEDULED, timeout=p.timeout,
                           result_ttl=p.interval + 3600, failure_ttl=86_400, description=f"periodic {p.name}")
    queue.schedule_job(job, datetime.now(UTC) + timedelta(seconds=delay), unique=True)


def ensure(queue: Queue, keys: Keys, p: Periodic, delay: float = 0) -> str | None:
    """Start the chain unless one is alive; the new run's id, or None when there was nothing to do."""
    conn = queue.connection
    key = keys.job_chain(p.name)
    raw = conn.get(key)
    current = as_text(raw)
    now_ms = int(time.time() * 1000)
    if current and is_alive(conn, current, now_ms):
        return None
    job_id = new_id(keys, p.name, now_ms)
    if not _swap(conn, key, current, job_id):
        return None  # another worker got there first
    _schedule(queue, p, job_id, delay)
    return job_id


def follow(queue: Queue, keys: Keys, p: Periodic, own_id: str) -> str | None:
    """Called by a run as it ends: schedule the next run, unless the chain has moved on without it."""
    job_id = new_id(keys, p.name)
    if not _swap(queue.connection, keys.job_chain(p.name), own_id, job_id):
        return None
    _schedule(queue, p, job_id, p.interval)
    return job_id
