"""Retention of ended rollouts: a rollout that ended `rollout_retention_days` ago goes with all of its keys (its
executions' commands expire on their own, at their `expires`). Run by the periodic retention job, one batch of
the rollout index a run, resuming where the last run stopped (`Keys.retention_cursor("rollouts")`)."""

from __future__ import annotations

import redis

from adapter.rollouts import calls
from adapter.store import scripts
from adapter.store.keys import Keys
from adapter.store.types import as_text

BATCH = 500


def run(r: redis.Redis, keys: Keys, cutoff_ms: int, batch: int = BATCH) -> int:
    """One batch of the rollout index (ids in order) from the saved id on, back to the start at its end; answers
    how many rollouts went."""
    mark = keys.retention_cursor("rollouts")
    after = as_text(r.get(mark)) or "0"
    rids = [as_text(x) for x in r.zrangebyscore(keys.rollouts(), f"({after}", "+inf", start=0, num=batch)]
    gone = 0
    if rids:
        with r.pipeline(transaction=False) as pipe:
            scripts.pipeline_scripts_sync(r, pipe, calls.RETENTION)
            for rid in rids:
                scripts.queue_call(pipe, calls.retention_call(keys, rid, cutoff_ms))
            gone = sum(int(x) for x in pipe.execute())
    if len(rids) < batch:
        r.delete(mark)
    else:
        r.set(mark, rids[-1])
    return gone
