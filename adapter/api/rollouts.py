"""Rollouts (beyond the seed, docs/rollouts.md): one command to the devices a selector matches, at a rate, with
ramp-up and an abort rule; progress, the per-device executions, pause, resume, cancel."""

from __future__ import annotations

from typing import Any

from adapter.commands.rules import Limits
from adapter.devices import selection
from adapter.http.endpoint import Call, Endpoint
from adapter.http.openapi import page_of
from adapter.http.validation import LIMIT, PAGE, Param
from adapter.rollouts import chain
from adapter.rollouts.records import COUNTS, RolloutStore, rollout_id
from adapter.rollouts.spec import SCHEMA, Outcome, RolloutState, parse_spec
from adapter.store.connections import rq_connection

BASE = "/iot/api/v1/remotectl/rollouts"
PREVIEW = 20

_INT = {"type": "integer"}
_COUNT = {"type": "integer", "minimum": 0}
CREATE_BODY: dict[str, Any] = {**SCHEMA, "properties": {
    **SCHEMA["properties"],
    "dryRun": {"type": "boolean", "default": False,
               "description": "true: create nothing; answer how many devices match now and the first few"}}}
_COUNTS = {"type": "object", "required": [*COUNTS, "inFlight", "matched"],
           "properties": {name: _COUNT for name in (*COUNTS, "inFlight", "matched")}}
ROLLOUT_SCHEMA = {
    "type": "object",
    "required": ["id", "name", "state", "spec", "counts", "rate", "etaSeconds", "abortReason", "createTime",
                 "startTime", "finishTime", "updateTime"],
    "properties": {
        "id": {"type": "integer", "minimum": 1}, "name": {"type": "string"},
        "state": {"type": "string", "enum": [s.value for s in RolloutState]},
        "spec": {"type": "object"}, "counts": _COUNTS,
        "rate": {"type": "object", "required": ["perMinute", "achieved"],
                 "properties": {"perMinute": {"type": "number"}, "achieved": {"type": "number"}}},
        "etaSeconds": {"type": ["integer", "null"]}, "abortReason": {"type": "string"},
        "createTime": _INT, "startTime": _INT, "finishTime": _INT, "updateTime": _INT,
    },
}
DRY_RUN_SCHEMA = {"type": "object", "required": ["dryRun", "matched", "preview"],
                  "properties": {"dryRun": {"const": True}, "matched": _COUNT,
                                 "preview": {"type": "array", "items": {"type": "string"}}}}
EXECUTION_SCHEMA = {"type": "object", "required": ["sn", "id", "idStr", "dispatchTime", "outcome", "finishTime"],
                    "properties": {"sn": {"type": "string"}, "id": _INT, "idStr": {"type": "string"},
                                   "dispatchTime": _INT, "finishTime": {**_INT, "description": "0 in flight"},
                                   "outcome": {"type": "string", "enum": [o.value for o in Outcome]}}}

ID = Param("id", description="one rollout (page and limit ignored)")
REQUIRED_ID = Param("id", required=True, description="the rollout id")


def _store(call: Call) -> RolloutStore:
    return RolloutStore(call.svc.redis, call.svc.keys)


async def create_rollout(call: Call) -> dict[str, Any]:
    spec = parse_spec(call.body, Limits.of(call.svc.settings))
    if call.body.get("dryRun"):
        preview = await selection.preview(call.svc.redis, call.svc.keys, spec.selector, 1, PREVIEW)
        return {"dryRun": True, "matched": preview["total"], "preview": preview["list"]}
    # the index's size, an upper bound (O(shards)); the driver makes it exact once its first walk ends
    src = selection.source_of(call.svc.keys, spec.selector)
    rid = await _store(call).create(spec, await selection.index_size(call.svc.redis, src))
    await chain.start(call.svc.redis, rq_connection(call.svc), call.svc.keys, rid)
    return await _store(call).get(rid)


async def query_rollouts(call: Call) -> dict[str, Any]:
    q = call.query
    if q["id"] is not None:
        return await _store(call).get(rollout_id(q["id"]))
    return await _store(call).page(q["page"], q["limit"])


async def rollout_executions(call: Call) -> dict[str, Any]:
    q = call.query
    return await _store(call).executions(rollout_id(q["id"]), q["page"], q["limit"])


async def _control(call: Call, action: str) -> dict[str, Any]:
    rid = rollout_id(call.query["id"])
    out = await _store(call).control(rid, action)
    if action == "resume":  # a driver may have been given up while paused
        await chain.start(call.svc.redis, rq_connection(call.svc), call.svc.keys, rid)
    return out


async def pause_rollout(call: Call) -> dict[str, Any]:
    return await _control(call, "pause")


async def resume_rollout(call: Call) -> dict[str, Any]:
    return await _control(call, "resume")


async def cancel_rollout(call: Call) -> dict[str, Any]:
    return await _control(call, "cancel")


ENDPOINTS = [
    Endpoint("POST", BASE, create_rollout,
             "Start a rollout (or, with dryRun, see what it would select): a command to every device a selector "
             "matches, at a rate", access="admin", body=CREATE_BODY,
             response={"oneOf": [ROLLOUT_SCHEMA, DRY_RUN_SCHEMA]}),
    Endpoint("GET", BASE, query_rollouts, "One rollout's progress (id), or a page of rollouts, newest first",
             query=(ID, PAGE, LIMIT), response={"oneOf": [ROLLOUT_SCHEMA, page_of(ROLLOUT_SCHEMA)]},
             errors=(404,)),
    Endpoint("GET", f"{BASE}/executions", rollout_executions,
             "A rollout's executions in dispatch order: device, command id, outcome",
             query=(REQUIRED_ID, PAGE, LIMIT), response=page_of(EXECUTION_SCHEMA), errors=(404,)),
    Endpoint("POST", f"{BASE}/pause", pause_rollout, "Pause a rollout: no new executions until resumed",
             access="admin", query=(REQUIRED_ID,), response=ROLLOUT_SCHEMA, errors=(404, 409)),
    Endpoint("POST", f"{BASE}/resume", resume_rollout, "Resume a paused rollout", access="admin",
             query=(REQUIRED_ID,), response=ROLLOUT_SCHEMA, errors=(404, 409)),
    Endpoint("DELETE", BASE, cancel_rollout,
             "Cancel a rollout: no new executions; its commands not sent yet are cancelled", access="admin",
             query=(REQUIRED_ID,), response=ROLLOUT_SCHEMA, errors=(404, 409)),
]
