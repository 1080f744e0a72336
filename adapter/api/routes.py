"""Message routes (seed: "get/add/update/delete message route config") and what the service adds: topic and
`enabled` in an update, secret rotation, recent deliveries, dead letters and replay.

The seed's answers carry exactly its fields; the seed's bodies stay open to extra fields (the console may
send more), the added ones are closed. The fixed `/configs/<word>` routes have no `{param}` sibling.
"""

from __future__ import annotations

from typing import Any

from adapter.api.targets import ID, INT, STR, URL, TargetApi, checked_url, object_schema
from adapter.http.endpoint import Call
from adapter.targets.route_table import RouteTable
from adapter.targets.routes import NAME_MAX, RouteStore

BASE = "/iot/api/v1/msgroute/configs"

_NAME = {"type": "string", "minLength": 1, "maxLength": NAME_MAX}
_TOPIC = {"type": "string", "description": "MQTT topic filter (`+` one level, `#` the rest)"}
_ENABLED = {"type": "boolean"}
ITEM_PROPERTIES: dict[str, Any] = {"id": ID, "name": STR, "topic": STR, "url": STR, "createTime": INT,
                                   "updateTime": INT}

CREATE_BODY = object_schema({"topic": _TOPIC, "name": _NAME, "url": URL,
                             "enabled": {**_ENABLED, "default": True}}, optional=("enabled",), closed=False)
UPDATE_BODY = object_schema({"id": ID, "name": _NAME, "topic": _TOPIC, "url": URL, "enabled": _ENABLED},
                            optional=("name", "topic", "url", "enabled"), closed=False)

async def reload_table(call: Call) -> None:
    """A change is in force in this process when it answers: its route table is loaded again first
    (adapter/targets/route_table.py)."""
    table = call.svc.extras.get("routes")
    if isinstance(table, RouteTable):
        await table.refresh(call.svc.redis)


API = TargetApi(BASE, "route", RouteStore, ITEM_PROPERTIES, changed=reload_table)


async def create_route(call: Call) -> dict[str, Any]:
    body, url = call.body, checked_url(call, call.body["url"])
    route, secret = await API.store(call).create(body["name"], body["topic"], url, body.get("enabled", True))
    await reload_table(call)
    return {**route.item(), "secret": secret}


async def update_route(call: Call) -> dict[str, Any]:
    body = call.body
    url = checked_url(call, body["url"]) if "url" in body else None
    route = await API.store(call).update(int(body["id"]), name=body.get("name"), topic=body.get("topic"),
                                         url=url, enabled=body.get("enabled"))
    await reload_table(call)
    return route.item()


ENDPOINTS = [
    *API.seed_endpoints(create_route, update_route, CREATE_BODY, UPDATE_BODY,
                        ("Message routes, by id, with their delivery counters",
                         "Add a message route (topic filter -> URL); answers its secret once",
                         "Change a route's name, topic, url and/or enabled")),
    *API.endpoints(),
]
