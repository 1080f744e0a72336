"""The chaos suite's counting, from synthetic records: lost, duplicates, order, recovery, 503 share, exits,
attribution to faults, and the goals."""

from __future__ import annotations

from adapter_devtools.chaos import counting
from adapter_devtools.chaos.counting import Figures, Goals, Stuck
from adapter_devtools.chaos.model import STEADY, Answer, Arrival, Exit, Item, Window

R = "route:1"


def item(seq: int, at: float, status: int = 200, device: str = "D1", target: str = R) -> Item:
    return Item(f"{device}:{target}:{seq}", target, device, seq, at, at + 0.01, status)


def arrival(seq: int, at: float, device: str = "D1", target: str = R) -> Arrival:
    return Arrival(f"{device}:{target}:{seq}", target, device, seq, at)


def row(rows: list[Figures], name: str) -> Figures:
    return next(r for r in rows if r.name == name)


def test_lost_is_accepted_and_never_received() -> None:
    items = [item(1, 0.0), item(2, 0.1), item(3, 0.2, status=0), item(4, 0.3, status=500)]
    first = counting.first_arrivals([arrival(1, 0.5)])
    assert [i.seq for i in counting.lost(items, first)] == [2]  # 3 was dropped by EMQX, 4 rejected: not lost


def test_duplicates_count_every_repeat_of_a_webhook_id() -> None:
    arrivals = [arrival(1, 1.0), arrival(1, 2.0), arrival(1, 3.0), arrival(2, 1.5)]
    assert counting.duplicates(arrivals) == {"D1:route:1:1": 2}


def test_order_looks_at_first_arrivals_per_target_and_device() -> None:
    arrivals = [arrival(1, 1.0), arrival(3, 1.1), arrival(2, 1.2),  # 2 after 3: out of order
                arrival(1, 1.3),  # a repeat of 1 is a duplicate, not an order violation
                arrival(1, 1.0, device="D2"), arrival(1, 1.05, target="callback:1"),  # other chains
                arrival(5, 1.4), arrival(4, 1.5), arrival(6, 1.6)]
    assert counting.out_of_order(arrivals) == {"D1:route:1:2", "D1:route:1:4"}


def test_a_gap_in_the_sequence_is_a_loss_not_an_order_violation() -> None:
    assert counting.out_of_order([arrival(1, 1.0), arrival(3, 1.1), arrival(4, 1.2)]) == set()


def test_the_gap_is_the_longest_stretch_without_arrivals_from_the_end_of_the_fault() -> None:
    times = [0.5, 1.0, 4.0, 4.1, 4.2, 9.0]
    gap, still_open = counting.longest_gap(times, end=2.0, until=8.0)  # 2.0 -> 4.0; 4.2 -> until 8.0: open
    assert round(gap, 2) == 3.8 and still_open
    assert counting.longest_gap(times, end=1.0, until=4.15) == (3.0, False)
    assert counting.longest_gap([], end=1.0, until=3.0) == (2.0, True)


def test_the_delay_counts_from_the_later_of_acceptance_and_the_end_of_the_fault() -> None:
    items = [item(1, 1.0), item(2, 6.0), item(3, 7.0)]
    first = counting.first_arrivals([arrival(1, 5.5), arrival(2, 6.2), arrival(3, 9.01)])
    wait, still_open = counting.longest_delay(items, first, end=5.0) or (0.0, True)
    assert round(wait, 2) == 2.0 and not still_open  # 3: accepted 7.01, got 9.01
    wait, still_open = counting.longest_delay(items, first, end=5.0, until=8.0) or (0.0, False)
    assert round(wait, 2) == 0.99 and still_open  # 3 was still waiting when the window ended
    assert counting.longest_delay([], first, end=5.0) is None


def test_figures_attribute_items_answers_and_exits_to_their_fault() -> None:
    w = Window("pause", start=10.0, end=15.0, until=20.0)
    items = [item(1, 5.0), item(2, 9.0), item(3, 12.0), item(4, 18.0), item(5, 25.0), item(6, 13.0)]
    arrivals = [arrival(1, 5.1), arrival(2, 9.1), arrival(4, 18.1), arrival(3, 18.2), arrival(3, 18.3),
                arrival(5, 25.1)]  # 6 lost, 3 out of order (after 4) and twice
    answers = [Answer(9.0, 9.1, 200), Answer(12.0, 12.1, 503), Answer(12.6, 13.0, 0), Answer(13.0, 16.0, 200),
               Answer(18.0, 18.1, 200)]
    exits = [Exit("worker-1", 11.0, 1), Exit("worker-2", 30.0, 1)]
    rows = counting.figures(items, arrivals, answers, [w], exits)
    pause, steady, total = row(rows, "pause"), row(rows, STEADY), row(rows, "all")
    assert (pause.accepted, pause.lost, pause.order, pause.duplicates, pause.exits) == (3, 1, 1, 1, 1)
    assert (pause.answers, pause.unavailable, pause.errors, pause.share_503) == (3, 1, 1, 1 / 3)
    assert round(pause.gap or 0, 2) == 3.1 and round(pause.delay or 0, 2) == 3.2  # 15 -> 18.1; 3 at 18.2
    assert (steady.accepted, steady.lost, steady.exits, steady.gap) == (3, 0, 1, None)
    assert (total.accepted, total.lost, total.order, total.duplicates, total.exits) == (6, 1, 1, 1, 2)


def test_an_item_belongs_to_the_fault_it_overlaps_even_when_created_before_it() -> None:
    w = Window("restart", start=10.0, end=11.0, until=15.0)
    late = Item("x", R, "D1", 1, created=9.0, done=12.0, status=200)  # retried through the fault
    assert counting.window_of([w], late.created, late.done) == "restart"
    assert counting.window_of([w], 15.0, 15.1) == STEADY


def test_goals() -> None:
    goals = Goals(cap=4, recovery=2.0)
    assert counting.misses(Figures("pause", accepted=10, duplicates=4, gap=1.0, delay=2.0), goals) == []
    missed = counting.misses(Figures("pause", lost=1, order=2, duplicates=5, exits=1, gap=0.1, delay=2.5), goals)
    assert missed == ["1 lost", "2 out of order", "1 worker exits", "5 duplicates > 4", "delay 2.5 s > 2 s"]
    assert counting.misses(Figures("pause", gap=2.5), goals) == ["recovery 2.5 s > 2 s"]
    with_lease = Goals(cap=4, recovery=2.0, lease=3.0)  # a killed worker's devices wait for its lease to expire
    assert counting.misses(Figures("worker-kill", gap=0.1, delay=4.5), with_lease) == []
    assert counting.misses(Figures("worker-kill", gap=0.1, delay=5.5), with_lease) == ["delay 5.5 s > 5 s"]
    assert counting.misses(Figures("pause", gap=0.1, delay=4.5), with_lease) == ["delay 4.5 s > 2 s"]
    assert counting.misses(Figures(STEADY, delay=9.0), goals) == []  # no recovery outside a fault
    assert counting.stuck_misses(Stuck(held={R: 0}, retry=0)) == []
    stuck = Stuck(held={R: 3, "callback:1": 1}, retry=2, hold_entries=4, marks=1, pending=1, unread=2)
    assert stuck.total == 4 + 1 + 2 + 1 + 2 and counting.stuck_misses(stuck) == ["10 stuck"]


def test_what_a_fault_does_to_items_accepted_before_it_counts_against_the_fault() -> None:
    w = Window("restart", start=10.0, end=11.0, until=15.0)
    items = [item(1, 8.0), item(2, 9.0), item(3, 12.0)]  # 1 and 2 accepted before the fault
    arrivals = [arrival(1, 8.1), arrival(1, 12.5),  # 1 sent again after the restart: a duplicate of the restart
                arrival(3, 12.1), arrival(2, 19.0)]  # 2 held through the fault, after 3: late and out of order
    rows = counting.figures(items, arrivals, [], [w], [])
    restart, steady = row(rows, "restart"), row(rows, STEADY)
    assert (restart.accepted, restart.duplicates, restart.order) == (1, 1, 1)
    assert round(restart.delay or 0, 2) == 4.0 and restart.delay_open  # 2: from the end (11) to the window's (15)
    assert (steady.accepted, steady.duplicates, steady.order) == (2, 0, 0)
