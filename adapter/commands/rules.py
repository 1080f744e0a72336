"""Remote control commands (docs/design.md §7, docs/commands.md): the vocabulary and the pure rules.

- `parse_request`: the seed's POST body into a `CommandRequest`, with a clear 400 for each mistake.
- `view` / `response_view`: a stored command (and its answer) as the seed shows them, plus `idStr`,
  `reason` and `deliverTime`.
- `downlink`: the payload published on `dma/cmd/{sn}`.
- `parse_response` / `acked_command`: what the ingest reads from `dma/resp/cmd` and `message.acked`.
- `CommandCalls`: the ingest's packed calls of `lifecycle.lua` (an answer, a
  delivery), sent with the ingest's other writes in one round trip; the calls' layout is adapter/commands/calls.py.

The store the API uses is adapter/commands/records.py; the worker side that publishes is
adapter/commands/runner.py. Every change of a command is one call of `lifecycle.lua`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson

from adapter.commands import calls
from adapter.commands.calls import COMMANDS
from adapter.commands.ids import id_str, parse_id
from adapter.errors import invalid
from adapter.protocol import uplink
from adapter.protocol.events import REST_API_CLIENT, SEEN_TTL, MessageAcked, MessagePublished, payload_bytes
from adapter.settings import Settings
from adapter.store.keys import Keys
from adapter.store.resp import PreparedCall
from adapter.store.scripts import ScriptCall
from adapter.store.types import as_int, as_text

DEFAULT_FROM = "iot_web_console"
METHODS = ("", "get", "set")
MAX_SN = 128
MAX_FROM = 64
MAX_COMMAND = 128
MAX_RETRIES = 100
DEFAULT_RETRIES = 3

class CommandState(IntEnum):
    """The seed's `state` of a command (docs/design.md §7); lifecycle.lua writes the same numbers."""

    READY = 0
    IN_PROGRESS = 1
    SUCCESS = 2
    FAILED = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


class FailReason(StrEnum):
    """Why a command failed (`reason`, beyond the seed); `expired` commands are gone, so it has no reason."""

    RETRIES_EXHAUSTED = "retries_exhausted"
    CANCELED = "canceled"
    REJECTED = "rejected"


STATES = {s.value: s.label for s in CommandState}
REASONS = tuple(r.value for r in FailReason)

SCRIPTS = (COMMANDS,)


@dataclass(frozen=True)
class Limits:
    max_targets: int
    body_max_bytes: int
    default_expires: int
    max_expires: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.command_max_targets, settings.command_body_max_bytes,
                   settings.command_default_expires, settings.command_max_expires)


@dataclass(frozen=True)
class CommandRequest:
    sender: str  # `from`
    sns: tuple[str, ...]
    command: str
    method: str
    body: bytes  # the command body, JSON
    publish_now: bool
    max_retries: int
    expires: int  # s
    detached: bool


# --- the POST body -------------------------------------------------------------------------------------


def parse_request(body: Mapping[str, Any], limits: Limits) -> CommandRequest:
    """The seed's POST body, checked; raises `invalid_params` naming the field."""
    sender = _text(body, "from", DEFAULT_FROM, MAX_FROM)
    if ":" in sender or "\x00" in sender or any(c.isspace() for c in sender):
        raise invalid("from: must not hold ':', NUL or white space")
    command = _text(body, "command", None, MAX_COMMAND)
    method = body.get("method", "")
    if method not in METHODS:
        raise invalid("method: must be one of \"\", \"get\", \"set\"")
    return CommandRequest(
        sender=sender, sns=_targets(body.get("to"), limits.max_targets), command=command, method=method,
        body=_command_body(body.get("body", {}), limits.body_max_bytes),
        publish_now=_flag(body, "publishNow", True),
        max_retries=_number(body, "maxRetries", DEFAULT_RETRIES, 0, MAX_RETRIES),
        expires=_number(body, "expires", limits.default_expires, 1, limits.max_expires),
        detached=_flag(body, "detached", False),
    )


def _text(body: Mapping[str, Any], name: str, default: str | None, longest: int) -> str:
    value = body.get(name)
    value = default if value is None else value
    if value is None:
        raise invalid(f"{name}: is required")
    if not isinstance(value, str) or not value:
        raise invalid(f"{name}: must be a non-empty string")
    if len(value) > longest:
        raise invalid(f"{name}: must be at most {longest} characters")
    return value


def _targets(to: Any, most: int) -> tuple[str, ...]:
    if not isinstance(to, list) or not to:
        raise invalid("to: must be a non-empty list of {\"sn\": …}")
    if len(to) > most:
        raise invalid(f"to: at most {most} devices in one request, not {len(to)}")
    sns: list[str] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(to):
        sn = item.get("sn") if isinstance(item, dict) else None
        if not isinstance(sn, str) or not sn or len(sn) > MAX_SN:
            raise invalid(f"to[{i}].sn: must be a string of 1 to {MAX_SN} characters")
        if "+" in sn or "#" in sn or "\x00" in sn:
            raise invalid(f"to[{i}].sn: must not hold '+', '#' or NUL (it names an MQTT topic)")
        if sn in seen:
            raise invalid(f"to[{i}].sn: the device is listed twice (to[{seen[sn]}] too)")
        seen[sn] = i
        sns.append(sn)
    return tuple(sns)


def _command_body(value: Any, most: int) -> bytes:
    if not isinstance(value, dict):
        raise invalid("body: must be a JSON object")
    data = orjson.dumps(value)
    if len(data) > most:
        raise invalid(f"body: must be at most {most} bytes as JSON, not {len(data)}")
    return data


def _flag(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise invalid(f"{name}: must be true or false")


def _number(body: Mapping[str, Any], name: str, default: int, least: int, most: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name}: must be an integer")
    if value < least:
        raise invalid(f"{name}: must be at least {least}")
    if value > most:
        raise invalid(f"{name}: must be at most {most}")
    return value


# --- what the API shows --------------------------------------------------------------------------------

_INTS = ("createTime", "deliverTime", "expires", "failedTime", "finishTime", "maxRetries", "publishTime",
         "state", "tryTimes")


def view(record: Mapping[str, str]) -> dict[str, Any]:
    """One command as the seed shows it, plus `idStr`, `reason` ("" unless failed) and `deliverTime`."""
    cid = int(record["id"])
    out: dict[str, Any] = {name: as_int(record.get(name)) for name in _INTS}
    out.update({
        "command": record.get("command", ""), "d": orjson.loads(record.get("d") or "{}"),
        "detached": 1 if record.get("detached") == "1" else 0, "from": record.get("from", ""), "id": cid,
        "idStr": id_str(cid), "method": record.get("method", ""),
        "publishNow": record.get("publishNow") == "1",
        "reason": record.get("reason", ""), "sn": record.get("sn", ""),
    })
    return dict(sorted(out.items()))


def response_view(stored: str | bytes) -> dict[str, Any]:
    """The device's answer as stored (its payload, `id` as a number, `idStr`, `revtime`); `result` as sent."""
    answer: dict[str, Any] = orjson.loads(stored)
    return answer


# --- downlink ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A command a runner took to send: what its downlink payload needs."""

    id: int
    sn: str
    sender: str
    command: str
    method: str
    d: str  # JSON
    detached: bool
    expires: int
    errors: int  # publish errors in a row so far

    @classmethod
    def from_reply(cls, row: Sequence[Any]) -> Claimed:
        text = [as_text(v) for v in row]
        return cls(int(text[0]), text[1], text[2], text[3], text[4], text[5], text[6] == "1", as_int(text[7]),
                   as_int(text[8]))


CLAIM_WIDTH = 9


def downlink(c: Claimed, now_s: int) -> bytes:
    """The payload on `dma/cmd/{sn}` (docs/design.md §3)."""
    return orjson.dumps({"id": c.id, "from": c.sender, "command": c.command, "method": c.method,
                         "d": orjson.Fragment(c.d), "detached": c.detached, "expires": c.expires,
                         "time": now_s})


# --- uplink: answers and deliveries ----------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResponse:
    id: int
    sn: str
    ok: bool
    stored: bytes  # the answer as the responses query shows it


def answered_ok(body: Mapping[str, Any]) -> bool:
    """ok when every status the device gave (`status`, `d.status`, `d.exestatus`) is "ok"."""
    d = body.get("d")
    inner = d if isinstance(d, dict) else {}
    said = [v for v in (body.get("status"), inner.get("status"), inner.get("exestatus")) if v is not None]
    return bool(said) and all(v == "ok" for v in said)


def parse_response(msg: MessagePublished) -> CommandResponse | uplink.Rejected:
    """An answer on `dma/resp/cmd`; rejected as the uplink's reports are (not JSON, too large, an `sn` that
    is not the publishing client id) or when it names no command id."""
    report = uplink.parse_report(msg, "response")
    if isinstance(report, uplink.Rejected):
        return report
    cid = parse_id(report.body.get("id"))
    if cid is None:
        return uplink.Rejected("bad_command_id")
    stored = {**report.body, "id": cid, "idStr": id_str(cid), "sn": msg.clientid, "revtime": report.revtime}
    return CommandResponse(cid, msg.clientid, answered_ok(report.body), orjson.dumps(stored))


def acked_command(ev: MessageAcked) -> int | None:
    """The command id of a delivery of ours to its own device (`message.acked` on `dma/cmd/{sn}`)."""
    if ev.from_clientid != REST_API_CLIENT or ev.topic != uplink.command_topic(ev.clientid):
        return None
    try:
        body = orjson.loads(payload_bytes(ev))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return parse_id(body.get("id")) if isinstance(body, dict) else None


# --- the ingest's script calls ----------------------------------------------------------------------------


class CommandCalls:
    """The ingest's calls of lifecycle.lua (adapter/commands/calls.py), packed as RESP (see resp.py). A call is
    of the partition of the publishing client: a command of another device is not in its slot, and the script
    ignores it (unknown, or not that client's)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._prepared: dict[str, PreparedCall] = {}  # by the call's first key: one per partition

    def _pack(self, call: ScriptCall) -> bytes:
        prepared = self._prepared.get(call.keys[0])
        if prepared is None:
            prepared = self._prepared[call.keys[0]] = PreparedCall(COMMANDS, call.keys, 0)
        return prepared.pack([], call.args)

    def respond(self, message_id: str, r: CommandResponse) -> bytes:
        return self._pack(calls.respond_call(self.keys, self.keys.shard(r.sn),
                                             self.keys.seen(f"cmd-resp:{message_id}", r.sn), SEEN_TTL, id_str(r.id),
                                             r.sn, r.ok, r.stored))

    def delivered(self, cid: int, clientid: str) -> bytes:
        return self._pack(calls.delivered_call(self.keys, self.keys.shard(clientid), id_str(cid), clientid))
