"""A rollout's specification and the pure rules its driver follows (docs/rollouts.md).

- `parse_spec`: the POST body into a `Spec`, with a 400 naming the field; the command part is the seed's command
  body without `to`, checked by the commands' own `parse_request`.
- `rate_now`: the dispatch rate (per minute) after `succeeded` successes: `perMinute`, or with a ramp
  `start * factor ** (succeeded // every)`, never above `perMinute` (AWS IoT Jobs' exponential rollout).
- `refill`: the token bucket that spaces dispatches at that rate (at most one second's worth saved up).
- `abort_reason`: whether the abort rule fires on the counts so far.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

import orjson

from adapter.commands.rules import CommandRequest, Limits, parse_request
from adapter.devices import selectors
from adapter.devices.selectors import Selector
from adapter.errors import invalid

MAX_PER_MINUTE = 1_000_000
MAX_IN_FLIGHT = 100_000
MAX_TIMEOUT = 7 * 86_400
BURST_S = 1.0  # the most dispatch allowance a rollout saves up: one second at its rate


class RolloutState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


ACTIVE = frozenset({RolloutState.QUEUED, RolloutState.RUNNING, RolloutState.PAUSED})


class Outcome(StrEnum):
    """How one device's execution ended (`inFlight` until it does); the rollout hash counts each."""

    IN_FLIGHT = "inFlight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timedOut"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Ramp:
    start: float  # per minute
    factor: float
    every: int  # successes per step


@dataclass(frozen=True)
class AbortRule:
    failure_ratio: float | None = None
    min_executed: int = 1
    max_failures: int | None = None


@dataclass(frozen=True)
class Spec:
    request: CommandRequest  # `sns` empty: the driver fills it per batch
    selector: Selector
    per_minute: float
    ramp: Ramp | None
    max_in_flight: int
    timeout: int  # s from dispatch to a finished command, else timed out
    abort: AbortRule
    name: str = ""


_NUM = {"type": "number"}
SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["command", "selector", "rate"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 128},
        "command": {"type": "object", "required": ["command"],
                    "description": "the seed's POST /remotectl/commands body without `to` (command, method, body, "
                                   "from, publishNow, maxRetries, expires, detached): each device's execution"},
        "selector": selectors.SCHEMA,
        "rate": {"type": "object", "required": ["perMinute"], "additionalProperties": False, "properties": {
            "perMinute": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_PER_MINUTE},
            "ramp": {"type": "object", "required": ["start", "factor", "every"], "additionalProperties": False,
                     "description": "rate = min(perMinute, start * factor ** (succeeded // every))",
                     "properties": {"start": {**_NUM, "exclusiveMinimum": 0},
                                    "factor": {**_NUM, "minimum": 1, "maximum": 5},
                                    "every": {"type": "integer", "minimum": 1}}}}},
        "maxInFlight": {"type": "integer", "minimum": 1, "maximum": MAX_IN_FLIGHT, "default": 100},
        "timeout": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT, "default": 600,
                    "description": "s from dispatch until an unfinished execution times out (its command is "
                                   "cancelled)"},
        "abort": {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
            "failureRatio": {**_NUM, "exclusiveMinimum": 0, "maximum": 1},
            "minExecuted": {"type": "integer", "minimum": 1, "default": 1},
            "maxFailures": {"type": "integer", "minimum": 1}}},
    },
}


def parse_spec(body: Mapping[str, Any], limits: Limits) -> Spec:
    """The POST body (checked against SCHEMA already); the command part by the commands' own rules."""
    command = body["command"]
    if not isinstance(command, dict) or "to" in command:
        raise invalid("command: must be the command body without `to` (the selector says which devices)")
    req = parse_request({**command, "to": [{"sn": "-"}]}, limits)
    rate = body["rate"]
    ramp = rate.get("ramp")
    abort = body.get("abort") or {}
    return Spec(
        request=CommandRequest(**{**asdict(req), "sns": ()}),
        selector=selectors.parse(body["selector"]),
        per_minute=float(rate["perMinute"]),
        ramp=Ramp(float(ramp["start"]), float(ramp["factor"]), int(ramp["every"])) if ramp else None,
        max_in_flight=int(body.get("maxInFlight", 100)),
        timeout=int(body.get("timeout", 600)),
        abort=AbortRule(abort.get("failureRatio"), int(abort.get("minExecuted", 1)), abort.get("maxFailures")),
        name=str(body.get("name", "")),
    )


def rate_now(spec: Spec, succeeded: int) -> float:
    """Dispatches per minute allowed after `succeeded` successes."""
    if spec.ramp is None:
        return spec.per_minute
    steps = succeeded // spec.ramp.every
    if spec.ramp.factor <= 1 or steps == 0:
        return min(spec.per_minute, spec.ramp.start)
    # log form: factor ** steps overflows long before it stops mattering
    if math.log(spec.per_minute / spec.ramp.start) <= steps * math.log(spec.ramp.factor):
        return spec.per_minute
    return min(spec.per_minute, spec.ramp.start * spec.ramp.factor ** steps)


def refill(allowance: float, elapsed_ms: float, per_minute: float) -> float:
    """The dispatch allowance after `elapsed_ms` at `per_minute`, capped at BURST_S's worth (at least one)."""
    cap = max(1.0, per_minute / 60 * BURST_S)
    return min(cap, allowance + max(0.0, elapsed_ms) * per_minute / 60_000)


def abort_reason(rule: AbortRule, succeeded: int, failures: int) -> str | None:
    """Why the rollout must abort now, or None. `failures` counts failed and timed-out executions."""
    if rule.max_failures is not None and failures >= rule.max_failures:
        return f"{failures} executions failed (maxFailures {rule.max_failures})"
    executed = succeeded + failures
    if rule.failure_ratio is not None and executed >= rule.min_executed and executed:
        ratio = failures / executed
        if ratio >= rule.failure_ratio:
            return (f"{failures} of {executed} executions failed ({ratio:.1%} >= failureRatio "
                    f"{rule.failure_ratio:.1%}, minExecuted {rule.min_executed})")
    return None


def spec_json(spec: Spec) -> dict[str, Any]:
    """The spec as stored and shown (the command part in the seed's spelling). A selector's sn list is not in it
    (a rollout keeps it in a sorted set): `selector.snList` says how many it lists."""
    req = spec.request
    out: dict[str, Any] = {
        "name": spec.name,
        "command": {"from": req.sender, "command": req.command, "method": req.method,
                    "body": orjson.loads(req.body), "publishNow": req.publish_now, "maxRetries": req.max_retries,
                    "expires": req.expires, "detached": req.detached},
        "selector": selector_json(spec.selector),
        "rate": {"perMinute": spec.per_minute},
        "maxInFlight": spec.max_in_flight, "timeout": spec.timeout,
        "abort": {k: v for k, v in (("failureRatio", spec.abort.failure_ratio),
                                    ("minExecuted", spec.abort.min_executed),
                                    ("maxFailures", spec.abort.max_failures)) if v is not None},
    }
    if spec.ramp is not None:
        out["rate"]["ramp"] = {"start": spec.ramp.start, "factor": spec.ramp.factor, "every": spec.ramp.every}
    return out


def selector_json(sel: Selector) -> dict[str, Any]:
    if sel.sns is None:
        return sel.as_json()
    rest = replace(sel, sns=None).as_json()
    rest.pop("all", None)
    return {**rest, "snList": len(sel.sns)}


def spec_of(doc: Mapping[str, Any], limits: Limits) -> Spec:
    """A stored spec back (`spec_json`'s output); a selector with `snList` gets `sns=()`: the list is in Redis."""
    selector = dict(doc["selector"])
    listed = selector.pop("snList", None)
    spec = parse_spec({**doc, "selector": selector or {"all": True}}, limits)
    return replace(spec, selector=replace(spec.selector, sns=())) if listed is not None else spec
