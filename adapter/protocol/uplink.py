"""The DMA device protocol's uplink (docs/design.md §3), as pure functions over message events.

`report_kind` and `parse_report` say what a message is to the device layer: a report from a device about
itself, a command response, or nothing in particular (still routed). A report whose payload is not JSON, is over
the size limit, nests deeper than adapter/jsonlimits.py allows, or names another `sn` than the publishing client
id is rejected with a reason (counted, dropped by the device layer, still routed): the broker-authenticated
client id is the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from adapter.jsonlimits import nests_deeper
from adapter.protocol.events import MessagePublished, payload_bytes

REPORT_PREFIX = "dma/report/"
COMMAND_TOPIC_PREFIX = "dma/cmd/"
RESPONSE_TOPIC = "dma/resp/cmd"
REPORT_KINDS = frozenset({"heartbeat", "procs", "sys", "versions", "peripherals"})
MAX_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Report:
    sn: str
    kind: str  # heartbeat | procs | sys | versions | peripherals | other
    body: dict[str, Any]
    revtime: int  # s, when the broker received it
    received_at: int  # ms


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # not_json | too_large | too_deep | sn_mismatch | bad_shape


@dataclass(frozen=True, slots=True)
class Peripheral:
    nid: str
    gw_id: str
    online: bool
    msg: str  # JSON string


def command_topic(sn: str) -> str:
    return f"{COMMAND_TOPIC_PREFIX}{sn}"


def is_own_command_topic(clientid: str, topic: str) -> bool:
    return topic == command_topic(clientid)


def report_kind(msg: MessagePublished) -> str | None:
    """The report kind when `msg` is on the publisher's own `dma/report/{sn}/…`, else None."""
    prefix = f"{REPORT_PREFIX}{msg.clientid}/"
    if not msg.topic.startswith(prefix):
        return None
    kind = msg.topic[len(prefix):]
    return kind if kind in REPORT_KINDS else "other"


def parse_report(msg: MessagePublished, kind: str) -> Report | Rejected:
    try:
        raw = payload_bytes(msg)
    except ValueError:
        return Rejected("not_json")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return Rejected("too_large")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Rejected("not_json")
    if nests_deeper(body, raw=raw):
        return Rejected("too_deep")
    if not isinstance(body, dict):
        return Rejected("bad_shape")
    if "sn" in body and body["sn"] != msg.clientid:
        return Rejected("sn_mismatch")
    return Report(msg.clientid, kind, body, msg.received_at // 1000, msg.received_at)


def stored_report(report: Report) -> str:
    """The JSON string the v1 device list shows: the device payload plus `revtime` (s)."""
    return orjson.dumps({**report.body, "revtime": report.revtime}, option=orjson.OPT_SORT_KEYS).decode()


def heartbeat_fields(report: Report) -> tuple[int, int]:
    """(bootTime, dur) of a heartbeat; -1 where the device did not say."""
    return _int_or(report.body.get("bootTime"), -1), _int_or(report.body.get("dur"), -1)


def peripherals_of(report: Report) -> list[Peripheral] | Rejected:
    items = report.body.get("d")
    if not isinstance(items, list):
        return Rejected("bad_shape")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("nId"), str) or not item["nId"]:
            return Rejected("bad_shape")
        if "/" in item["nId"] or ":" in item["nId"]:
            return Rejected("bad_shape")
        gw = item.get("gwId")
        msg = item.get("msg", {})
        out.append(Peripheral(item["nId"], gw if isinstance(gw, str) else "", item.get("online") is True,
                              orjson.dumps(msg).decode() if not isinstance(msg, str) else msg))
    return out


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
