"""Device credentials for MQTT (EMQX authenticates devices through `/emqx/authn`): create one (the secret
is shown once), list them without secrets, revoke one. Revoking does not disconnect a connected device;
EMQX refuses it at its next connect (kick it through EMQX to end the session now).
"""

from __future__ import annotations

from typing import Any

from adapter.broker.credentials import CredentialStore, check_sn
from adapter.http.endpoint import Call, Endpoint
from adapter.http.openapi import page_of
from adapter.http.validation import LIMIT, PAGE, Param

BASE = "/iot/api/v1/devices/credentials"

_SN = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[\w.@-]+$"}
ITEM_SCHEMA = {"type": "object", "required": ["sn", "createTime"], "additionalProperties": False,
               "properties": {"sn": {"type": "string"}, "createTime": {"type": "integer"}}}
CREATED_SCHEMA = {"type": "object", "required": ["sn", "secret", "createTime"], "additionalProperties": False,
                  "properties": {"sn": {"type": "string"}, "secret": {"type": "string", "minLength": 43},
                                 "createTime": {"type": "integer"}}}
CREATE_BODY = {"type": "object", "required": ["sn"], "additionalProperties": False, "properties": {"sn": _SN}}
ROWS_SCHEMA = {"type": "object", "required": ["rows"], "additionalProperties": False,
               "properties": {"rows": {"type": "integer", "minimum": 0, "maximum": 1}}}

SN_FILTER = Param("sn", description="only this device's credential (exact sn)")
SN_REQUIRED = Param("sn", required=True, description="the device whose credential to revoke")


def _store(call: Call) -> CredentialStore:
    return CredentialStore(call.svc.redis, call.svc.keys)


async def create_credential(call: Call) -> dict[str, Any]:
    credential, secret = await _store(call).create(check_sn(call.body["sn"]))
    return {**credential.item(), "secret": secret}


async def list_credentials(call: Call) -> dict[str, Any]:
    q = call.query
    if q["sn"] is not None:
        one = await _store(call).get(q["sn"])
        items = [one.item()] if one else []
        return {"total": len(items), "count": len(items), "page": 1, "limit": q["limit"], "list": items}
    total, page = await _store(call).page(q["page"], q["limit"])
    return {"total": total, "count": len(page), "page": q["page"], "limit": q["limit"],
            "list": [c.item() for c in page]}


async def revoke_credential(call: Call) -> dict[str, int]:
    return {"rows": await _store(call).revoke(call.query["sn"])}


ENDPOINTS = [
    Endpoint("POST", BASE, create_credential, "Create a device's MQTT credential (the secret is shown once)",
             access="admin", body=CREATE_BODY, response=CREATED_SCHEMA, tag="devices", errors=(400, 409)),
    Endpoint("GET", BASE, list_credentials, "Devices that have an MQTT credential, newest first (no secrets)",
             query=(PAGE, LIMIT, SN_FILTER), response=page_of(ITEM_SCHEMA), tag="devices", errors=(400,)),
    Endpoint("DELETE", BASE, revoke_credential, "Revoke a device's MQTT credential", access="admin",
             query=(SN_REQUIRED,), response=ROWS_SCHEMA, tag="devices", errors=(400,)),
]
