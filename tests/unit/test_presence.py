"""Presence rules: worked examples, and properties over random interleavings of real connection histories."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.devices.presence import INITIAL, PresenceEvent, PresenceState, Transition, apply
from adapter.protocol.events import Connected, Disconnected

CID = "device-001"
T0 = 1_717_000_000_000
ENDING_REASONS = ("normal", "tcp_closed", "keepalive_timeout", "kicked")
KEEPING_REASONS = ("takenover", "discarded")


def conn(at: int) -> Connected:
    return Connected(clientid=CID, connected_at=at)


def disc(at: int, reason: str = "tcp_closed", connected_at: int | None = None) -> Disconnected:
    return Disconnected(clientid=CID, disconnected_at=at, reason=reason, connected_at=connected_at)


def run(events: list[PresenceEvent], state: PresenceState | None = None
        ) -> tuple[PresenceState | None, list[Transition]]:
    transitions = []
    for ev in events:
        state, t = apply(state, ev)
        if t is not None:
            transitions.append(t)
    return state, transitions


# --- worked examples -------------------------------------------------------------------------------


def test_connect_then_disconnect() -> None:
    state, ts = run([conn(100), disc(200, "keepalive_timeout", connected_at=100)])
    assert ts == [Transition(CID, True, 100, "connected", 1, 100),
                  Transition(CID, False, 200, "keepalive_timeout", 2, 100)]
    assert state == PresenceState(online=False, connected_at=100, ended_through=100, version=2,
                                  online_time=100, offline_time=200)


def test_first_event_a_disconnect_changes_no_presence() -> None:
    state, ts = run([disc(200, connected_at=100)])
    assert ts == []
    assert state is not None
    assert (state.online, state.version, state.ended_through) == (False, 0, 100)


def test_old_disconnect_after_the_new_connect_is_ignored() -> None:  # emqx/emqx#12954
    for late in (disc(150, connected_at=100), disc(150)):
        state, ts = run([conn(100), conn(160), late])
        assert [t.online for t in ts] == [True]
        assert state is not None and state.online and state.connected_at == 160


def test_disconnect_of_a_newer_connection_ends_the_recorded_one_too() -> None:
    for newer_end in (disc(250, connected_at=200), disc(250)):
        state, ts = run([conn(100), newer_end, conn(200), disc(150, connected_at=100)])
        assert [(t.online, t.time) for t in ts] == [(True, 100), (False, 250)]
        assert state is not None and not state.online


def test_takeover_and_discard_never_take_the_device_offline() -> None:
    for reason in KEEPING_REASONS:
        state, ts = run([conn(100), disc(150, reason, connected_at=100)])
        assert [t.online for t in ts] == [True]
        assert state is not None and state.online
        state, ts = run([disc(150, reason, connected_at=100), conn(100), conn(150)])
        assert [t.online for t in ts] == [True]


def test_versions_count_transitions_across_reconnects() -> None:
    _, ts = run([conn(100), disc(110), conn(120), disc(130, connected_at=120), conn(140)])
    assert [(t.online, t.version) for t in ts] == [(True, 1), (False, 2), (True, 3), (False, 4), (True, 5)]


def test_redelivery_changes_nothing() -> None:
    state, _ = run([conn(100), disc(200, connected_at=100)])
    for ev in (conn(100), disc(200, connected_at=100)):
        assert apply(state, ev) == (state, None)


def test_none_is_the_initial_state() -> None:
    assert apply(None, disc(5, "takenover")) == (INITIAL, None)


# --- properties over generated histories ------------------------------------------------------------


@dataclass(frozen=True)
class Conn:
    connected_at: int
    ended_at: int | None  # None: still open
    reason: str | None
    reports_connected_at: bool  # EMQX >= 5.8.6 puts connected_at into the disconnect


@st.composite
def histories(draw: st.DrawFn) -> list[Conn]:
    """Sequential connections of one client id; times close together so that ties happen."""
    count = draw(st.integers(0, 5))
    at = T0 + draw(st.integers(0, 1000))
    conns = []
    for i in range(count):
        last = i == count - 1
        if last and draw(st.booleans()):
            conns.append(Conn(at, None, None, False))
            break
        ended = at + draw(st.integers(0, 3))
        reason = draw(st.sampled_from(ENDING_REASONS if last else ENDING_REASONS + KEEPING_REASONS))
        conns.append(Conn(at, ended, reason, draw(st.booleans())))
        gap = draw(st.integers(0 if reason in KEEPING_REASONS else 1, 3))
        at = max(ended + gap, at + 1)  # a takeover may happen in the same ms; a real reconnect cannot
    return conns


def events_in_order(conns: list[Conn]) -> list[PresenceEvent]:
    events: list[PresenceEvent] = []
    for c in conns:
        events.append(conn(c.connected_at))
        if c.ended_at is not None and c.reason is not None:
            events.append(disc(c.ended_at, c.reason, c.connected_at if c.reports_connected_at else None))
    return events


def true_transitions(conns: list[Conn]) -> list[Transition]:
    online = False
    out: list[Transition] = []
    for c in conns:
        if not online:
            online = True
            out.append(Transition(CID, True, c.connected_at, "connected", len(out) + 1, c.connected_at))
        if c.ended_at is not None and c.reason in ENDING_REASONS:
            online = False
            at = c.connected_at if c.reports_connected_at else None
            out.append(Transition(CID, False, c.ended_at, c.reason, len(out) + 1, at))
    return out


def truly_online(conns: list[Conn]) -> bool:
    return bool(conns) and conns[-1].ended_at is None


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[Conn], list[PresenceEvent]]:
    """A history, and its events delivered in random order, some more than once."""
    conns = draw(histories())
    events = events_in_order(conns)
    repeats = draw(st.lists(st.sampled_from(events), max_size=4)) if events else []
    return conns, draw(st.permutations(events + repeats))


@settings(max_examples=200, deadline=None)
@given(histories())
def test_events_in_true_order_give_exactly_the_true_transitions(conns: list[Conn]) -> None:
    state, ts = run(events_in_order(conns))
    assert ts == true_transitions(conns)
    assert (state or INITIAL).online == truly_online(conns)


@settings(max_examples=200, deadline=None)
@given(deliveries())
def test_any_interleaving_ends_in_the_truth(case: tuple[list[Conn], list[PresenceEvent]]) -> None:
    conns, delivered = case
    state: PresenceState | None = None
    ts: list[Transition] = []
    for ev in delivered:
        state, t = apply(state, ev)
        assert apply(state, ev) == (state, None)  # an immediate redelivery changes nothing
        if t is not None:
            ts.append(t)
    final = state or INITIAL
    assert final.online == truly_online(conns)
    assert [t.online for t in ts] == [i % 2 == 0 for i in range(len(ts))]  # alternate, online first
    assert [t.version for t in ts] == list(range(1, len(ts) + 1))
    assert final.version == len(ts)
    assert final.online_time == next((t.time for t in reversed(ts) if t.online), None)
    assert final.offline_time == next((t.time for t in reversed(ts) if not t.online), None)
    for ev in events_in_order(conns):  # a late redelivery of any event changes nothing either
        assert apply(final, ev) == (final, None)
