"""Device status change callbacks (seed: "get/set/enable device status change callbacks", "callbacks
statistics") and what the service adds: change, delete, rotate the secret, recent deliveries, dead letters
and replay.

Route order: the fixed `/callbacks/<word>` routes come before `/callbacks/{type}/stats`, and this module's
ENDPOINTS before `GET /monitor/devices/{sn}` (adapter/api/devices.py), which would capture `/callbacks`.
"""

from __future__ import annotations

from typing import Any

from adapter.callbacks import OUTCOMES, TYPES, CallbackStore
from adapter.endpoint import Call, Endpoint
from adapter.errors import not_found
from adapter.urlguard import check_static
from adapter.validation import Param

BASE = "/iot/api/v1/monitor/devices/callbacks"
MAX_ID = 2**63 - 1

_INT = {"type": "integer"}
_COUNT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_TYPE = {"type": "string", "enum": list(TYPES)}
_URL = {"type": "string", "description": "http(s) URL, at most 2048 characters"}
_SECRET = {"type": "string", "pattern": "^whsec_", "description": "Standard Webhooks signing secret"}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = (),
            closed: bool = True) -> dict[str, Any]:
    required = [p for p in properties if p not in optional]
    schema = {"type": "object", "required": required, "properties": properties}
    return {**schema, "additionalProperties": False} if closed else schema


ITEM_PROPERTIES: dict[str, Any] = {"id": _ID, "type": _TYPE, "url": _STR, "enabled": {"type": "boolean"},
                                   "createTime": _INT, "updateTime": _INT}
ITEM_SCHEMA = _object(ITEM_PROPERTIES)
CREATED_SCHEMA = _object({**ITEM_PROPERTIES, "secret": _SECRET})
LISTED_SCHEMA = _object({**ITEM_PROPERTIES, "succCount": _COUNT, "failedCount": _COUNT})
STATS_SCHEMA = _object({"succ": _COUNT, "failed": _COUNT})

_NULLABLE_STR = {"type": ["string", "null"]}
ATTEMPT_PROPERTIES: dict[str, Any] = {
    "deliveryId": _STR, "eventId": _STR, "attempt": _INT, "time": {"type": "number"},
    "status": {"type": ["integer", "null"]}, "durationMs": {"type": ["number", "null"]},
    "error": _NULLABLE_STR, "excerpt": _NULLABLE_STR, "outcome": {"type": "string", "enum": list(OUTCOMES)},
}
ATTEMPT_SCHEMA = _object(ATTEMPT_PROPERTIES, optional=tuple(ATTEMPT_PROPERTIES)[1:], closed=False)
DEAD_PROPERTIES: dict[str, Any] = {"deliveryId": _STR, "body": _STR, "key": _STR, "attempts": _INT,
                                   "lastError": _NULLABLE_STR, "time": {"type": "number"}}
DEAD_SCHEMA = _object(DEAD_PROPERTIES, optional=tuple(DEAD_PROPERTIES)[1:], closed=False)


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return _object({"count": _COUNT, "list": {"type": "array", "items": item}})


# the seed's bodies stay open to extra fields (the console may send more); the added ones are closed
CREATE_BODY = _object({"type": _TYPE, "url": _URL, "enabled": {"type": "boolean", "default": True}},
                      optional=("enabled",), closed=False)
ENABLE_BODY = _object({"id": _ID, "enabled": {"type": "boolean"}}, closed=False)
UPDATE_BODY = _object({"id": _ID, "url": _URL, "enabled": {"type": "boolean"}}, optional=("url", "enabled"))
ID_BODY = _object({"id": _ID})
REPLAY_BODY = _object({"id": _ID, "deliveryId": {"type": "string", "minLength": 1, "maxLength": 200}},
                      optional=("deliveryId",))

ID = Param("id", "int", minimum=1, maximum=MAX_ID, required=True, description="callback id")
OUTCOME = Param("status", enum=OUTCOMES, description="only attempts with this outcome")


def _store(call: Call) -> CallbackStore:
    return CallbackStore(call.svc.redis, call.svc.keys)


def _url(call: Call, url: str) -> str:
    return check_static(url, call.svc.settings.allow_private_urls)


async def list_callbacks(call: Call) -> dict[str, Any]:
    items = [cb.listed() for cb in await _store(call).all()]
    return {"count": len(items), "list": items}


async def create_callback(call: Call) -> dict[str, Any]:
    body = call.body
    cb, secret = await _store(call).create(body["type"], _url(call, body["url"]), body.get("enabled", True))
    return {**cb.item(), "secret": secret}


async def enable_callback(call: Call) -> dict[str, Any]:
    cb = await _store(call).set_enabled(int(call.body["id"]), call.body["enabled"])
    return cb.item()


async def update_callback(call: Call) -> dict[str, Any]:
    body = call.body
    url = _url(call, body["url"]) if "url" in body else None
    cb = await _store(call).update(int(body["id"]), url=url, enabled=body.get("enabled"))
    return cb.item()


async def delete_callback(call: Call) -> dict[str, int]:
    return {"rows": await _store(call).delete(call.query["id"])}


async def rotate_secret(call: Call) -> dict[str, Any]:
    cb_id = int(call.body["id"])
    return {"id": cb_id, "secret": await _store(call).rotate_secret(cb_id)}


async def list_deliveries(call: Call) -> dict[str, Any]:
    attempts = await _store(call).deliveries(call.query["id"], call.query["status"])
    return {"count": len(attempts), "list": attempts}


async def list_dead(call: Call) -> dict[str, Any]:
    items = await _store(call).dead(call.query["id"])
    return {"count": len(items), "list": items}


async def replay_dead(call: Call) -> dict[str, int]:
    moved = await _store(call).replay(int(call.body["id"]), call.body.get("deliveryId"),
                                      call.svc.settings.delivery_partitions)
    return {"replayed": moved}


async def callback_stats(call: Call) -> dict[str, int]:
    cb_type = str(call.path["type"])
    if cb_type not in TYPES:
        raise not_found("callback type must be device or peripheral")
    return await _store(call).stats(cb_type)


ENDPOINTS = [
    Endpoint("GET", BASE, list_callbacks, "Status change callbacks, by id, with their delivery counters",
             response=_list_of(LISTED_SCHEMA)),
    Endpoint("POST", BASE, create_callback, "Add a status change callback; answers its signing secret once",
             access="admin", body=CREATE_BODY, response=CREATED_SCHEMA),
    Endpoint("PUT", BASE, update_callback, "Change a callback's url and/or enabled", access="admin",
             body=UPDATE_BODY, response=ITEM_SCHEMA, errors=(404, 409)),
    Endpoint("DELETE", BASE, delete_callback, "Remove a callback with its attempts and dead letters",
             access="admin", query=(ID,), response=_object({"rows": _COUNT})),
    Endpoint("POST", f"{BASE}/enable", enable_callback, "Enable or disable a callback", access="admin",
             body=ENABLE_BODY, response=ITEM_SCHEMA, errors=(404, 409)),
    Endpoint("POST", f"{BASE}/secret", rotate_secret, "Replace a callback's signing secret; answers the new",
             access="admin", body=ID_BODY, response=_object({"id": _ID, "secret": _SECRET}),
             errors=(404, 409)),
    Endpoint("GET", f"{BASE}/deliveries", list_deliveries, "A callback's recent attempts, newest first",
             query=(ID, OUTCOME), response=_list_of(ATTEMPT_SCHEMA), errors=(404,)),
    Endpoint("GET", f"{BASE}/dead", list_dead, "A callback's dead-lettered deliveries, oldest first",
             query=(ID,), response=_list_of(DEAD_SCHEMA), errors=(404,)),
    Endpoint("POST", f"{BASE}/replay", replay_dead, "Send one (deliveryId) or all dead letters again",
             access="admin", body=REPLAY_BODY, response=_object({"replayed": _COUNT}), errors=(404, 409)),
    # after the fixed /callbacks/<word> routes
    Endpoint("GET", BASE + "/{type}/stats", callback_stats, "Deliveries of one callback type: succ, failed",
             response=STATS_SCHEMA),
]
