"""Device tags and selector dry runs (beyond the seed; docs/rollouts.md "Tags", "Selectors"). Declared before
adapter/api/devices.py, whose `GET /monitor/devices/{sn}` would capture `/monitor/devices/tags`."""

from __future__ import annotations

from typing import Any

from adapter.devices import selection, selectors
from adapter.devices import tags as device_tags
from adapter.devices.selectors import MAX_SN, TAG
from adapter.errors import invalid
from adapter.http.endpoint import Call, Endpoint
from adapter.http.openapi import page_of
from adapter.http.validation import LIMIT, PAGE, Param

BASE = "/iot/api/v1/monitor/devices"
MAX_SNS = 1000

_STR = {"type": "string"}
_TAG = {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$"}
PUT_BODY: dict[str, Any] = {
    "type": "object", "required": ["sns", "tags"], "additionalProperties": False,
    "properties": {
        "sns": {"type": "array", "minItems": 1, "maxItems": MAX_SNS,
                "items": {"type": "string", "minLength": 1, "maxLength": MAX_SN}},
        "tags": {"type": "array", "minItems": 1, "maxItems": device_tags.MAX_TAGS, "items": _TAG},
    },
}
DEVICE_TAGS = {"type": "object", "required": ["sn", "tags"], "additionalProperties": False,
               "properties": {"sn": _STR, "tags": {"type": "array", "items": _STR}}}

SN = Param("sn", description="one device: its tags")
TAG_Q = Param("tag", description="one tag: the devices carrying it (paged, sn order)")
REQUIRED_SN = Param("sn", required=True, description="the device")
TAG_OFF = Param("tag", description="the tag to take off (absent: every tag of the device)")


def _tag(raw: str | None) -> str | None:
    if raw is not None and not TAG.fullmatch(raw):
        raise invalid("tag: must be 1 to 64 letters, digits, '_', '.', '-'")
    return raw


def _sn(raw: str) -> str:
    if len(raw) > MAX_SN:
        raise invalid(f"sn: must be at most {MAX_SN} characters")
    return raw


async def put_tags(call: Call) -> dict[str, Any]:
    sns = list(dict.fromkeys(call.body["sns"]))
    tags = list(dict.fromkeys(call.body["tags"]))
    return {"added": await device_tags.add(call.svc.redis, call.svc.keys, sns, tags), "devices": len(sns)}


async def get_tags(call: Call) -> dict[str, Any]:
    q = call.query
    if (q["sn"] is None) == (q["tag"] is None):
        raise invalid("sn or tag: give exactly one")
    if q["sn"] is not None:
        sn = _sn(q["sn"])
        return {"sn": sn, "tags": await device_tags.of(call.svc.redis, call.svc.keys, sn)}
    return await device_tags.page(call.svc.redis, call.svc.keys, str(_tag(q["tag"])), q["page"], q["limit"])


async def delete_tags(call: Call) -> dict[str, Any]:
    sn = _sn(call.query["sn"])
    removed = await device_tags.remove(call.svc.redis, call.svc.keys, sn, _tag(call.query["tag"]))
    return {"sn": sn, "removed": removed}


async def select_devices(call: Call) -> dict[str, Any]:
    sel = selectors.parse(call.body)
    return await selection.preview(call.svc.redis, call.svc.keys, sel, call.query["page"], call.query["limit"])


ENDPOINTS = [
    Endpoint("PUT", f"{BASE}/tags", put_tags, "Tag devices (beyond the seed): every listed tag on every listed sn",
             access="admin", body=PUT_BODY,
             response={"type": "object", "required": ["added", "devices"],
                       "properties": {"added": {"type": "integer", "minimum": 0,
                                                "description": "new (device, tag) pairs"},
                                      "devices": {"type": "integer", "minimum": 1}}}),
    Endpoint("GET", f"{BASE}/tags", get_tags, "One device's tags (sn), or the devices carrying a tag (tag, paged)",
             query=(SN, TAG_Q, PAGE, LIMIT), response={"oneOf": [DEVICE_TAGS, page_of(_STR)]}),
    Endpoint("DELETE", f"{BASE}/tags", delete_tags, "Take a tag (or every tag) off a device", access="admin",
             query=(REQUIRED_SN, TAG_OFF),
             response={"type": "object", "required": ["sn", "removed"],
                       "properties": {"sn": _STR, "removed": {"type": "array", "items": _STR}}}),
    Endpoint("POST", f"{BASE}/select", select_devices,
             "Dry run of a selector: how many devices it matches now, and which (paged, sn order)",
             body=selectors.SCHEMA, query=(PAGE, LIMIT), response=page_of(_STR)),
]
