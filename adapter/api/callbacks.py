"""Device status change callbacks (seed: "get/set/enable device status change callbacks", "callbacks
statistics") and what the service adds: change, delete, rotate the secret, recent deliveries, dead letters
and replay.

Route order: the fixed `/callbacks/<word>` routes come before `/callbacks/{type}/stats`, and this module's
ENDPOINTS before `GET /monitor/devices/{sn}` (adapter/api/devices.py), which would capture `/callbacks`.
"""

from __future__ import annotations

from typing import Any

from adapter.api.targets import COUNT, ID, INT, STR, URL, TargetApi, checked_url, object_schema
from adapter.errors import not_found
from adapter.http.endpoint import Call, Endpoint
from adapter.targets.callbacks import TYPES, CallbackStore

BASE = "/iot/api/v1/monitor/devices/callbacks"

_TYPE = {"type": "string", "enum": list(TYPES)}
ITEM_PROPERTIES: dict[str, Any] = {"id": ID, "type": _TYPE, "url": STR, "enabled": {"type": "boolean"},
                                   "createTime": INT, "updateTime": INT}
STATS_SCHEMA = object_schema({"succ": COUNT, "failed": COUNT})

# the seed's bodies stay open to extra fields (the console may send more); the added ones are closed
CREATE_BODY = object_schema({"type": _TYPE, "url": URL, "enabled": {"type": "boolean", "default": True}},
                            optional=("enabled",), closed=False)
ENABLE_BODY = object_schema({"id": ID, "enabled": {"type": "boolean"}}, closed=False)
UPDATE_BODY = object_schema({"id": ID, "url": URL, "enabled": {"type": "boolean"}},
                            optional=("url", "enabled"))

API = TargetApi(BASE, "callback", CallbackStore, ITEM_PROPERTIES)


async def create_callback(call: Call) -> dict[str, Any]:
    body, store = call.body, API.store(call)
    cb, secret = await store.create(body["type"], checked_url(call, body["url"]), body.get("enabled", True))
    return {**cb.item(), "secret": secret}


async def enable_callback(call: Call) -> dict[str, Any]:
    cb = await API.store(call).set_enabled(int(call.body["id"]), call.body["enabled"])
    return cb.item()


async def update_callback(call: Call) -> dict[str, Any]:
    body = call.body
    url = checked_url(call, body["url"]) if "url" in body else None
    cb = await API.store(call).update(int(body["id"]), url=url, enabled=body.get("enabled"))
    return cb.item()


async def callback_stats(call: Call) -> dict[str, int]:
    cb_type = str(call.path["type"])
    if cb_type not in TYPES:
        raise not_found("callback type must be device or peripheral")
    return await API.store(call).stats(cb_type)


ENDPOINTS = [
    *API.seed_endpoints(create_callback, update_callback, CREATE_BODY, UPDATE_BODY,
                        ("Status change callbacks, by id, with their delivery counters",
                         "Add a status change callback; answers its signing secret once",
                         "Change a callback's url and/or enabled")),
    Endpoint("POST", f"{BASE}/enable", enable_callback, "Enable or disable a callback", access="admin",
             body=ENABLE_BODY, response=API.item_schema, errors=(404, 409)),
    *API.endpoints(),
    # after the fixed /callbacks/<word> routes
    Endpoint("GET", BASE + "/{type}/stats", callback_stats, "Deliveries of one callback type: succ, failed",
             response=STATS_SCHEMA),
]
