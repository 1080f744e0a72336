"""Beyond the seed: per-minute series of the fleet, of each delivery target and of each device's presence, for charts
(docs/api.md "Series")."""

from __future__ import annotations

import time
from typing import Any

from adapter.http.endpoint import Call, Endpoint
from adapter.http.validation import Param
from adapter.stats import reading as store
from adapter.stats.series import DAY, METRICS, MINUTE

_TIME = {"type": "integer", "minimum": 0}
SERIES_SCHEMA = {
    "type": "object", "required": ["metric", "id", "sn", "kind", "from", "to", "step", "points"],
    "additionalProperties": False,
    "properties": {
        "metric": {"type": "string", "enum": list(METRICS)}, "id": {"type": ["integer", "null"]},
        "sn": {"type": ["string", "null"]},
        "kind": {"type": "string", "enum": ["gauge", "counter"],
                 "description": "counter: how many in each step; gauge: the mean level over each step"},
        "from": _TIME, "to": _TIME, "step": {"type": "integer", "minimum": MINUTE},
        "points": {"type": "array", "description": "[start of the step (s), value or null: nothing sampled]",
                   "items": {"type": "array", "items": {"type": ["number", "null"]}, "minItems": 2, "maxItems": 2}},
    },
}
QUERY = (
    Param("metric", required=True, enum=tuple(METRICS), description="the series"),
    Param("id", "int", minimum=1, maximum=2**63 - 1, description="the route or callback (route.*, callback.*)"),
    Param("sn", description="the device (device.*): its exact sn"),
    Param("from", "int", minimum=0, description="start, s since the epoch (default: an hour before `to`)"),
    Param("to", "int", minimum=0, description="end, s since the epoch (default: now); at most a day after `from`"),
    Param("step", "int", default=MINUTE, minimum=MINUTE, maximum=DAY,
          description="seconds per point, a whole number of minutes (default 60)"),
)


async def stats_series(call: Call) -> dict[str, Any]:
    q = call.query
    start, end = store.span(q["from"], q["to"], q["step"], int(time.time()))
    return await store.read(call.svc.redis, call.svc.keys, q["metric"], q["id"], start, end, q["step"], q["sn"])


ENDPOINTS = [
    Endpoint("GET", "/iot/api/v1/stats/series", stats_series,
             "A per-minute series over a window of at most a day: devices online, ingest, commands, deliveries "
             "(of the fleet, or of one route or callback), and a device's share of time online", query=QUERY,
             response=SERIES_SCHEMA, errors=(404,)),
]
