"""The presence rules (docs/design.md §5): online/offline of one client id that is right after any interleaving.

EMQX does not order an old connection's `client.disconnected` against the next connection's
`client.connected`, and it redelivers events. A connection is identified by its `connected_at` (ms):
- a `connected` applies only when newer than every connection already seen started or ended;
- a `disconnected` applies only to the current connection or a newer one. It is placed by its
  `connected_at` when EMQX sends it (5.8.6+, 4.x plugin), else by its `disconnected_at`: a connection
  that ended at `d` started at or before `d`, and the next one starts after `d`. A disconnect of a
  connection newer than the recorded one means the recorded one ended as well, so the device is offline,
  and every connection up to that point is remembered as ended (`ended_through`) so that the newer
  connection's late `connected` cannot bring it back;
- reasons `takenover`/`discarded` never take a device offline: a newer connection holds the session.
Each real transition (offline→online, online→offline) bumps `version`; everything else is a no-op.

Known limit: without `connected_at` in disconnects, a real disconnect (not a takeover) and the next
connect in the same millisecond are indistinguishable; the next connection is then taken as ended.

`adapter/devices/presence.lua` is the same function, run atomically inside Redis (see `presence_calls.py`);
tests hold the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from adapter.protocol.events import Connected, Disconnected

KEEPS_ONLINE_REASONS = frozenset({"takenover", "discarded"})
ONLINE_REASON = "connected"


@dataclass(frozen=True, slots=True)
class PresenceState:
    online: bool = False
    connected_at: int | None = None  # the newest connection whose `connected` applied
    ended_through: int | None = None  # every connection with connected_at <= this has ended
    version: int = 0
    online_time: int | None = None  # ms of the last offline→online transition
    offline_time: int | None = None  # ms of the last online→offline transition


@dataclass(frozen=True, slots=True)
class Transition:
    clientid: str
    online: bool
    time: int  # ms: the connection's connected_at, or the disconnect's disconnected_at
    reason: str  # "connected", or the disconnect reason
    version: int
    connected_at: int | None  # the connection the transition belongs to, when known


INITIAL = PresenceState()


PresenceEvent = Connected | Disconnected


def apply(state: PresenceState | None, ev: PresenceEvent) -> tuple[PresenceState, Transition | None]:
    """Apply one event to a client's presence; return the new state and the transition, if any."""
    current = state or INITIAL
    if isinstance(ev, Connected):
        return _connected(current, ev)
    return _disconnected(current, ev)


def ends_connection(ev: Disconnected) -> bool:
    """Whether this disconnect can take the device offline (a takeover or discard cannot)."""
    return ev.reason not in KEEPS_ONLINE_REASONS


def _at_most(value: int, bound: int | None) -> bool:
    return bound is not None and value <= bound


def _connected(s: PresenceState, ev: Connected) -> tuple[PresenceState, Transition | None]:
    at = ev.connected_at
    if _at_most(at, s.connected_at) or _at_most(at, s.ended_through):
        return s, None  # a duplicate, or a connection already superseded or ended
    if s.online:
        return replace(s, connected_at=at), None
    new = replace(s, online=True, connected_at=at, version=s.version + 1, online_time=at)
    return new, Transition(ev.clientid, True, at, ONLINE_REASON, new.version, at)


def _disconnected(s: PresenceState, ev: Disconnected) -> tuple[PresenceState, Transition | None]:
    if not ends_connection(ev):
        return s, None
    mark = ev.connected_at if ev.connected_at is not None else ev.disconnected_at
    if _at_most(mark, s.ended_through) or (s.connected_at is not None and mark < s.connected_at):
        return s, None  # a duplicate, or the end of a connection older than the current one
    if not s.online:
        return replace(s, ended_through=mark), None
    new = replace(s, online=False, ended_through=mark, version=s.version + 1,
                  offline_time=ev.disconnected_at)
    return new, Transition(ev.clientid, False, ev.disconnected_at, ev.reason, new.version, ev.connected_at)
