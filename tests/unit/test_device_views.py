"""Stored hashes → v1 device and peripheral items: names, JSON types, units and defaults."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapter.devices.views import (
    DEVICE_FIELDS,
    PERIPHERAL_FIELDS,
    device_detail,
    device_item,
    interval,
    is_recorded,
    ms_to_seconds,
    peripheral_item,
    seconds,
    split_member,
)

PROCS = '{"d":[{"mem":1088,"n":"monitor"}],"revtime":1542188564,"sn":"8CFCA0107D1B","time":1295556987}'


def row(**fields: str) -> list[str | None]:
    return [fields.get(name) for name in DEVICE_FIELDS]


def test_a_full_record_maps_to_the_seed_item() -> None:
    values = row(online="1", online_time="1542188264123", offline_time="1542188181999",
                 activeTime="1542188584", bootTime="-1", dur="5", procs=PROCS, sys="", versions='{"d":[]}')
    assert device_item("8CFCA0107D1B", values) == {
        "activeTime": 1542188584, "bootTime": -1, "dur": 5, "offlineTime": 1542188181, "online": True,
        "onlineTime": 1542188264, "procs": PROCS, "sn": "8CFCA0107D1B", "sys": "", "versions": '{"d":[]}',
    }


def test_a_device_with_nothing_recorded_gets_the_documented_defaults() -> None:
    assert device_item("X", row()) == {
        "activeTime": 0, "bootTime": -1, "dur": -1, "offlineTime": 0, "online": False, "onlineTime": 0,
        "procs": "", "sn": "X", "sys": "", "versions": "",
    }


def test_only_a_1_is_online() -> None:
    assert device_item("X", row(online="1"))["online"] is True
    for value in ("0", "", "true", "yes"):
        assert device_item("X", row(online=value))["online"] is False


def test_fractional_and_garbage_numbers() -> None:
    assert seconds("1542188584.9") == 1542188584
    assert seconds("abc") == 0
    assert seconds("nan") == 0
    assert seconds("1e300") == 0  # beyond 2**53: garbage, never an integer JSON cannot carry
    assert seconds("", -1) == -1
    assert ms_to_seconds("999") == 0
    assert ms_to_seconds("1000") == 1
    assert ms_to_seconds(None) == 0
    assert interval("0.5") == 1  # a sub-second interval does not read as 0
    assert interval("15") == 15
    assert interval(None) == -1


@given(st.integers(min_value=0, max_value=2**52))
def test_ms_become_whole_seconds(ms: int) -> None:
    assert ms_to_seconds(str(ms)) == ms // 1000


def test_every_number_is_an_int_and_every_report_a_str() -> None:
    item = device_item("X", row(activeTime="12.5", bootTime="3.0", dur="2.2", online_time="1500.7"))
    ints = ("activeTime", "bootTime", "dur", "offlineTime", "onlineTime")
    assert all(type(item[k]) is int for k in ints)
    assert all(type(item[k]) is str for k in ("procs", "sys", "versions", "sn"))
    assert (item["activeTime"], item["bootTime"], item["dur"], item["onlineTime"]) == (12, 3, 3, 1)


def test_detail_adds_version_and_peripherals() -> None:
    detail = device_detail("X", row(online="1"), "7", 3)
    assert detail["version"] == 7 and detail["peripherals"] == 3
    rest = {k: v for k, v in detail.items() if k not in ("version", "peripherals")}
    assert rest == device_item("X", row(online="1"))
    assert device_detail("X", row(), None, 0)["version"] == 0


def test_peripheral_item() -> None:
    values = ["PH1", "GW8", "RPI1", "1", "1542188574", "1542188579", '{"t":1}']
    assert peripheral_item("RPI1/PH1", values) == {
        "nId": "PH1", "gwId": "GW8", "sn": "RPI1", "online": True, "activeTime": 1542188574,
        "revTime": 1542188579, "msg": '{"t":1}',
    }


def test_peripheral_defaults_fall_back_on_the_member() -> None:
    values: list[str | None] = [None] * len(PERIPHERAL_FIELDS)
    values[PERIPHERAL_FIELDS.index("online")] = "0"
    assert peripheral_item("RPI1/a/b", values) == {
        "nId": "a/b", "gwId": "", "sn": "RPI1", "online": False, "activeTime": 0, "revTime": 0, "msg": "",
    }


def test_split_member_cuts_at_the_first_slash() -> None:
    assert split_member("SN1/N1") == ("SN1", "N1")
    assert split_member("SN1/N/1") == ("SN1", "N/1")


def test_is_recorded() -> None:
    assert not is_recorded([None, None])
    assert is_recorded([None, "0"])


def _float_path(raw: str | None, default: int, scale: int, up: bool) -> int:
    """The reference: every stored value read as a float (what the views did before their int fast path)."""
    import math
    try:
        value = float(raw) if raw not in (None, "") else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) >= 2.0**53:
        return default
    return math.ceil(value) if up else math.floor(value / scale)


@given(st.one_of(st.none(), st.integers(-10**17, 10**17).map(str), st.floats(allow_nan=True).map(str),
                 st.sampled_from(["", " 12", "12 ", "+5", "-0", "00012", "1_000", "١٢", "²", "0x10", "1e3",
                                  "999999999999999", "1000000000000000", "-999999999999999"]),
                 st.text(max_size=6)))
def test_the_int_fast_path_reads_every_value_as_the_float_path_does(raw: str | None) -> None:
    assert seconds(raw) == _float_path(raw, 0, 1, False)
    assert seconds(raw, -1) == _float_path(raw, -1, 1, False)
    assert ms_to_seconds(raw) == _float_path(raw, 0, 1000, False)
    assert interval(raw) == _float_path(raw, -1, 1, True)
