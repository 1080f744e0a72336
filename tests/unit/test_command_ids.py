"""Command ids: YYYYMMDD + a 10-digit daily sequence; accepted as a number or a string; ordinals exact."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.commands.ids import MAX_SEQ, day_of, id_range, id_str, make_id, ordinal, parse_id


def test_the_seed_example() -> None:
    cid = make_id("20181126", 1)
    assert cid == 201811260000000001
    assert id_str(cid) == "201811260000000001"
    assert cid > 2**53  # why every answer carries idStr too


def test_a_range_is_what_incrby_handed_out() -> None:
    assert id_range("20181126", 12, 3) == [201811260000000010, 201811260000000011, 201811260000000012]


@pytest.mark.parametrize("day, seq", [("20181126", 0), ("20181126", MAX_SEQ + 1), ("20181331", 1),
                                      ("2018112", 1), ("abcdefgh", 1)])
def test_make_id_refuses_what_is_not_an_id(day: str, seq: int) -> None:
    with pytest.raises(ValueError):
        make_id(day, seq)


def test_the_day_is_utc() -> None:
    late = datetime(2018, 11, 26, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert day_of(late) == "20181127"
    assert day_of(datetime(2018, 11, 26, 0, 0, tzinfo=UTC)) == "20181126"


@pytest.mark.parametrize("raw", [201811260000000001, "201811260000000001"])
def test_parse_id_takes_a_number_or_a_string(raw: object) -> None:
    assert parse_id(raw) == 201811260000000001


@pytest.mark.parametrize("raw", [None, True, 1.5, "", "abc", "20181126000000001", "2018112600000000001",
                                 "201813260000000001", "201811260000000000", "-01811260000000001",
                                 "２01811260000000001", 789, [201811260000000001], " 201811260000000001 "])
def test_parse_id_refuses_anything_else(raw: object) -> None:
    assert parse_id(raw) is None


def test_ordinal_is_an_exact_double_and_orders_like_ids() -> None:
    first, same_day, next_day = make_id("20181126", MAX_SEQ), make_id("20181126", 2), make_id("20181127", 1)
    assert ordinal(same_day) < ordinal(first) < ordinal(next_day)
    assert float(ordinal(first)) == ordinal(first)


days = st.dates(min_value=date(1970, 1, 1), max_value=date(2999, 12, 31))
seqs = st.integers(min_value=1, max_value=MAX_SEQ)


@given(days, seqs, days, seqs)
def test_ordinal_preserves_order_exactly(d1: date, s1: int, d2: date, s2: int) -> None:
    a, b = make_id(d1.strftime("%Y%m%d"), s1), make_id(d2.strftime("%Y%m%d"), s2)
    assert (a < b) == (ordinal(a) < ordinal(b))
    assert ordinal(a) < 2**53 and int(float(ordinal(a))) == ordinal(a)
    assert parse_id(id_str(a)) == a == parse_id(a)


def test_on_the_cluster_an_id_carries_its_partition() -> None:
    """seq = local × P + partition: the partition comes back from the id alone; ids stay valid and unique."""
    from adapter.commands.ids import max_local, partition_of, partition_range

    made = {p: partition_range("20181126", 7, 3, p, 48) for p in range(48)}
    assert made[5] == [make_id("20181126", local * 48 + 5) for local in (5, 6, 7)]
    every = [cid for ids in made.values() for cid in ids]
    assert len(set(every)) == len(every) == 144
    assert all(partition_of(cid, 48) == p for p, ids in made.items() for cid in ids)
    assert all(parse_id(str(cid)) == cid for cid in every)
    assert len({ordinal(cid) for cid in every}) == 144  # distinct scores across partitions
    assert partition_of(make_id("20181126", 12345), 0) == 0  # one Redis: no partition in the id
    assert max_local(47, 48) * 48 + 47 <= MAX_SEQ < (max_local(47, 48) + 1) * 48 + 47
    assert partition_range("20181126", 1, 1, 0, 48) == [make_id("20181126", 48)]  # never sequence 0
