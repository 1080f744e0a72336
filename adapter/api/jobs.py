"""Beyond the seed: the progress of a long job (bulk command creation; later dead-letter replay)."""

from __future__ import annotations

from typing import Any

from adapter.errors import not_found
from adapter.http.endpoint import Call, Endpoint
from adapter.http.validation import Param
from adapter.jobs import progress as job_progress

JOB_SCHEMA = {
    "type": "object", "required": ["id", "kind", "state", "done", "total"],
    "properties": {"id": {"type": "string"}, "kind": {"type": "string"},
                   "state": {"type": "string", "enum": list(job_progress.STATES)},
                   "done": {"type": "integer"}, "total": {"type": "integer"}, "error": {"type": "string"},
                   "createTime": {"type": "integer"}, "updateTime": {"type": "integer"}},
}


async def job(call: Call) -> dict[str, Any]:
    found = await job_progress.read(call.svc.redis, call.svc.keys, call.query["id"])
    if found is None:
        raise not_found(f"no job {call.query['id']}")
    return found


ENDPOINTS = [
    Endpoint("GET", "/iot/api/v1/jobs", job, "A job's progress: state, done of total (beyond the seed)",
             query=(Param("id", required=True, description="the job id a POST answered as `job`"),),
             response=JOB_SCHEMA, errors=(404,)),
]
