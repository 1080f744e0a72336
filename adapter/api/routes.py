"""Message routes (seed: "get/add/update/delete message route config") and what the service adds: topic and
`enabled` in an update, secret rotation, recent deliveries, dead letters and replay.

The seed's answers carry exactly its fields; the seed's bodies stay open to extra fields (the console may
send more), the added ones are closed. The fixed `/configs/<word>` routes have no `{param}` sibling.
"""

from __future__ import annotations

from typing import Any

from adapter.endpoint import Call, Endpoint
from adapter.routes import NAME_MAX, RouteStore
from adapter.targets import OUTCOMES
from adapter.urlguard import check_static
from adapter.validation import Param

BASE = "/iot/api/v1/msgroute/configs"
MAX_ID = 2**63 - 1

_INT = {"type": "integer"}
_COUNT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_NAME = {"type": "string", "minLength": 1, "maxLength": NAME_MAX}
_TOPIC = {"type": "string", "description": "MQTT topic filter (`+` one level, `#` the rest)"}
_URL = {"type": "string", "description": "http(s) URL, at most 2048 characters"}
_SECRET = {"type": "string", "pattern": "^whsec_", "description": "Standard Webhooks signing secret"}
_NULLABLE_STR = {"type": ["string", "null"]}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = (),
            closed: bool = True) -> dict[str, Any]:
    required = [p for p in properties if p not in optional]
    schema = {"type": "object", "required": required, "properties": properties}
    return {**schema, "additionalProperties": False} if closed else schema


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return _object({"count": _COUNT, "list": {"type": "array", "items": item}})


ITEM_PROPERTIES: dict[str, Any] = {"id": _ID, "name": _STR, "topic": _STR, "url": _STR, "createTime": _INT,
                                   "updateTime": _INT}
ITEM_SCHEMA = _object(ITEM_PROPERTIES)
CREATED_SCHEMA = _object({**ITEM_PROPERTIES, "secret": _SECRET})
LISTED_SCHEMA = _object({**ITEM_PROPERTIES, "succCount": _COUNT, "failedCount": _COUNT})

ATTEMPT_PROPERTIES: dict[str, Any] = {
    "deliveryId": _STR, "eventId": _STR, "attempt": _INT, "time": {"type": "number"},
    "status": {"type": ["integer", "null"]}, "durationMs": {"type": ["number", "null"]},
    "error": _NULLABLE_STR, "excerpt": _NULLABLE_STR, "outcome": {"type": "string", "enum": list(OUTCOMES)},
}
ATTEMPT_SCHEMA = _object(ATTEMPT_PROPERTIES, optional=tuple(ATTEMPT_PROPERTIES)[1:], closed=False)
DEAD_PROPERTIES: dict[str, Any] = {"deliveryId": _STR, "body": _STR, "key": _STR, "attempts": _INT,
                                   "lastError": _NULLABLE_STR, "time": {"type": "number"}}
DEAD_SCHEMA = _object(DEAD_PROPERTIES, optional=tuple(DEAD_PROPERTIES)[1:], closed=False)

_ENABLED = {"type": "boolean"}
CREATE_BODY = _object({"topic": _TOPIC, "name": _NAME, "url": _URL, "enabled": {**_ENABLED, "default": True}},
                      optional=("enabled",), closed=False)
UPDATE_BODY = _object({"id": _ID, "name": _NAME, "topic": _TOPIC, "url": _URL, "enabled": _ENABLED},
                      optional=("name", "topic", "url", "enabled"), closed=False)
ID_BODY = _object({"id": _ID})
REPLAY_BODY = _object({"id": _ID, "deliveryId": {"type": "string", "minLength": 1, "maxLength": 200}},
                      optional=("deliveryId",))

ID = Param("id", "int", minimum=1, maximum=MAX_ID, required=True, description="route id")
OUTCOME = Param("status", enum=OUTCOMES, description="only attempts with this outcome")


def _store(call: Call) -> RouteStore:
    return RouteStore(call.svc.redis, call.svc.keys)


def _url(call: Call, url: str) -> str:
    return check_static(url, call.svc.settings.allow_private_urls)


async def list_routes(call: Call) -> dict[str, Any]:
    items = [route.listed() for route in await _store(call).all()]
    return {"count": len(items), "list": items}


async def create_route(call: Call) -> dict[str, Any]:
    body = call.body
    url = _url(call, body["url"])
    route, secret = await _store(call).create(body["name"], body["topic"], url, body.get("enabled", True))
    return {**route.item(), "secret": secret}


async def update_route(call: Call) -> dict[str, Any]:
    body = call.body
    url = _url(call, body["url"]) if "url" in body else None
    route = await _store(call).update(int(body["id"]), name=body.get("name"), topic=body.get("topic"),
                                      url=url, enabled=body.get("enabled"))
    return route.item()


async def delete_route(call: Call) -> dict[str, int]:
    return {"rows": await _store(call).delete(call.query["id"])}


async def rotate_secret(call: Call) -> dict[str, Any]:
    route_id = int(call.body["id"])
    return {"id": route_id, "secret": await _store(call).rotate_secret(route_id)}


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


ENDPOINTS = [
    Endpoint("GET", BASE, list_routes, "Message routes, by id, with their delivery counters",
             response=_list_of(LISTED_SCHEMA)),
    Endpoint("POST", BASE, create_route, "Add a message route (topic filter -> URL); answers its secret once",
             access="admin", body=CREATE_BODY, response=CREATED_SCHEMA),
    Endpoint("PUT", BASE, update_route, "Change a route's name, topic, url and/or enabled", access="admin",
             body=UPDATE_BODY, response=ITEM_SCHEMA, errors=(404, 409)),
    Endpoint("DELETE", BASE, delete_route, "Remove a route with its attempts and dead letters",
             access="admin", query=(ID,), response=_object({"rows": _COUNT})),
    Endpoint("POST", f"{BASE}/secret", rotate_secret, "Replace a route's signing secret; answers the new",
             access="admin", body=ID_BODY, response=_object({"id": _ID, "secret": _SECRET}),
             errors=(404, 409)),
    Endpoint("GET", f"{BASE}/deliveries", list_deliveries, "A route's recent attempts, newest first",
             query=(ID, OUTCOME), response=_list_of(ATTEMPT_SCHEMA), errors=(404,)),
    Endpoint("GET", f"{BASE}/dead", list_dead, "A route's dead-lettered deliveries, oldest first",
             query=(ID,), response=_list_of(DEAD_SCHEMA), errors=(404,)),
    Endpoint("POST", f"{BASE}/replay", replay_dead, "Send one (deliveryId) or all dead letters again",
             access="admin", body=REPLAY_BODY, response=_object({"replayed": _COUNT}), errors=(404, 409)),
]
