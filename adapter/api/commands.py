"""Remote control (seed "Remote Control", docs/design.md §7): publish commands to devices, their status, the
devices' answers, and (beyond the seed) cancel. Answers carry exactly the seed's fields plus `idStr`
(ids exceed 2^53), `reason` and `deliverTime`; every `id` parameter takes the number or its string.
"""

from __future__ import annotations

from typing import Any

from adapter.commands import bulk as command_bulk
from adapter.commands.ids import parse_id
from adapter.commands.records import CommandStore
from adapter.commands.rules import DEFAULT_FROM, DEFAULT_RETRIES, MAX_RETRIES, METHODS, Limits, parse_request
from adapter.errors import invalid
from adapter.http.endpoint import Call, Endpoint
from adapter.http.openapi import page_of
from adapter.http.validation import LIMIT, PAGE, Param

BASE = "/iot/api/v1/remotectl/commands"

_INT = {"type": "integer"}
_STR = {"type": "string"}
_ID = {"type": "integer", "minimum": 1, "description": "YYYYMMDD + a 10-digit daily sequence (over 2^53)"}
_ID_STR = {"type": "string", "pattern": "^[0-9]{18}$", "description": "the id as a string"}

CREATE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["to", "command"],
    "properties": {
        "from": {**_STR, "default": DEFAULT_FROM, "maxLength": 64},
        "to": {"type": "array", "minItems": 1,
               "description": 'the devices, [{"sn": …}], each at most once '
                              '(at most ADAPTER_COMMAND_MAX_TARGETS)'},
        "command": {**_STR, "minLength": 1, "maxLength": 128},
        "method": {"type": "string", "enum": list(METHODS), "default": ""},
        "body": {"type": "object", "description": "the command body (limit: ADAPTER_COMMAND_BODY_MAX_BYTES)"},
        "publishNow": {"type": ["boolean", "integer"], "default": True},
        "maxRetries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES, "default": 3,
                       "description": "the most sends (0 counts as 1)"},
        "expires": {"type": "integer", "minimum": 1,
                    "description": "seconds after creation; then the command and its answer are gone"},
        "detached": {"type": ["boolean", "integer"], "default": False},
    },
}

TARGET_SCHEMA = {"type": "object", "required": ["id", "idStr", "sn"],
                 "properties": {"id": _ID, "idStr": _ID_STR, "sn": _STR}}
COMMAND_PROPERTIES: dict[str, Any] = {
    "command": _STR, "createTime": _INT, "d": {"type": "object"}, "deliverTime": _INT,
    "detached": {"type": "integer", "enum": [0, 1]}, "expires": _INT, "failedTime": _INT, "finishTime": _INT,
    "from": _STR, "id": _ID, "idStr": _ID_STR, "maxRetries": _INT, "method": _STR,
    "publishNow": {"type": "boolean"}, "publishTime": _INT,
    "reason": {"type": "string", "description": '"" unless failed: retries_exhausted, canceled, rejected'},
    "sn": _STR, "state": {"type": "integer", "enum": [0, 1, 2, 3],
                          "description": "0 ready, 1 in progress, 2 success, 3 failed"},
    "tryTimes": _INT,
}
COMMAND_SCHEMA = {"type": "object", "required": sorted(COMMAND_PROPERTIES), "properties": COMMAND_PROPERTIES}
RESPONSE_SCHEMA = {"type": "object", "required": ["id", "idStr", "sn", "revtime"],
                   "description": "the device's payload as sent (for sh, `d.result` stays base64), with `id` "
                                  "as a number, `idStr` and `revtime` (s)",
                   "properties": {"id": _ID, "idStr": _ID_STR, "revtime": _INT, "sn": _STR}}

ID = Param("id", description="command id, as a number or a string")
REQUIRED_ID = Param("id", required=True, description="command id, as a number or a string")
FROM = Param("from", description="only commands with this `from`")
SN = Param("sn", description="only commands to this device")


def _store(call: Call) -> CommandStore:
    return CommandStore(call.svc.redis, call.svc.keys)


def _id(raw: str) -> int:
    cid = parse_id(raw)
    if cid is None:
        raise invalid("id: must be a command id (18 digits: YYYYMMDD and a daily sequence)")
    return cid


async def create_commands(call: Call) -> dict[str, Any]:
    req = parse_request(call.body, Limits.of(call.svc.settings))
    if len(req.sns) > call.svc.settings.command_job_threshold:
        return await command_bulk.create(call.svc, req)
    return {"to": await _store(call).create(req)}


async def query_commands(call: Call) -> dict[str, Any]:
    q = call.query
    if q["id"] is not None:
        return await _store(call).get(_id(q["id"]))
    return await _store(call).page(q["from"], q["sn"], q["page"], q["limit"])


async def command_response(call: Call) -> dict[str, Any]:
    return await _store(call).response(_id(call.query["id"]), call.query["from"])


async def cancel_command(call: Call) -> dict[str, Any]:
    return await _store(call).cancel(_id(call.query["id"]))


async def command_limits(call: Call) -> dict[str, Any]:
    limits = Limits.of(call.svc.settings)
    return {"defaultExpires": limits.default_expires, "maxExpires": limits.max_expires,
            "defaultRetries": DEFAULT_RETRIES, "maxRetries": MAX_RETRIES, "maxTargets": limits.max_targets,
            "bodyMaxBytes": limits.body_max_bytes}


_POSITIVE = {"type": "integer", "minimum": 1}
LIMITS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["defaultExpires", "maxExpires", "defaultRetries", "maxRetries", "maxTargets", "bodyMaxBytes"],
    "properties": {
        "defaultExpires": {**_POSITIVE, "description": "`expires` (s) of a command that gives none"},
        "maxExpires": {**_POSITIVE, "description": "the largest `expires` (s) accepted; there is no \"never\""},
        "defaultRetries": {"type": "integer", "minimum": 0}, "maxRetries": _POSITIVE,
        "maxTargets": {**_POSITIVE, "description": "most devices in one POST"},
        "bodyMaxBytes": {**_POSITIVE, "description": "largest `body`, as JSON"},
    },
}


ENDPOINTS = [
    Endpoint("POST", BASE, create_commands, "Publish a command to devices: one command (and id) per device",
             access="admin", body=CREATE_BODY,
             response={"type": "object", "required": ["to"],
                       "properties": {"to": {"type": "array", "items": TARGET_SCHEMA},
                                      "job": {"type": "string",
                                              "description": "beyond the seed: only when `to` lists more than "
                                                             "ADAPTER_COMMAND_JOB_THRESHOLD devices; the "
                                                             "records are written by this job "
                                                             "(GET /iot/api/v1/jobs?id=)"}}}),
    Endpoint("GET", BASE, query_commands, "One command (id; page and limit ignored) or a page, newest first",
             query=(ID, FROM, SN, PAGE, LIMIT),
             response={"oneOf": [COMMAND_SCHEMA, page_of(COMMAND_SCHEMA)]}, errors=(404,)),
    Endpoint("GET", f"{BASE}/responses", command_response, "A device's answer to a command, with revtime",
             query=(REQUIRED_ID, FROM), response=RESPONSE_SCHEMA, errors=(404,)),
    Endpoint("GET", "/iot/api/v1/remotectl/limits", command_limits,
             "What a POST of commands may give and what it gets when it gives nothing (beyond the seed)",
             response=LIMITS_SCHEMA),
    Endpoint("DELETE", BASE, cancel_command, "Cancel an unfinished command: failed, reason canceled",
             access="admin", query=(REQUIRED_ID,), response=COMMAND_SCHEMA, errors=(404, 409)),
]
