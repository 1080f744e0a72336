"""Selectors (adapter/devices/selectors.py): parsing with a 400 per mistake, and matching a device record."""

from __future__ import annotations

import orjson
import pytest

from adapter.devices.selectors import Selector, parse, version_key
from adapter.errors import AppError


def versions(**components: str) -> str:
    return orjson.dumps({"sn": "A", "time": 1, "d": [{"n": n, "v": v} for n, v in components.items()],
                         "revtime": 2}).decode()


def test_versions_compare_by_number_not_by_text() -> None:
    assert version_key("1.10.0 20181114-173644") > version_key("1.9.9")
    assert version_key("1.4.0") == version_key("1.4.0 build")
    assert version_key("1.4") < version_key("1.4.0")


def test_a_version_rule_matches_only_devices_that_report_the_component() -> None:
    sel = parse({"version": "upgrade.cmd < 1.4.0"})
    assert sel.matches("A", {"device": "1", "versions": versions(**{"upgrade.cmd": "1.3.9 2018"})})
    assert not sel.matches("A", {"device": "1", "versions": versions(**{"upgrade.cmd": "1.4.0"})})
    assert not sel.matches("A", {"device": "1", "versions": versions(monitor="1.0.0")})
    assert not sel.matches("A", {"device": "1", "versions": None})
    assert not sel.matches("A", {"device": "1", "versions": "not json"})


def test_every_field_must_hold_and_only_known_devices_match() -> None:
    sel = parse({"snPrefix": "GW", "online": True, "tag": "blue"})
    assert sel.matches("GW1", {"device": "1", "online": "1"}, has_tag=True)
    assert not sel.matches("GW1", {"device": "1", "online": "1"}, has_tag=False)
    assert not sel.matches("GW1", {"device": "1", "online": "0"}, has_tag=True)
    assert not sel.matches("XX1", {"device": "1", "online": "1"}, has_tag=True)
    assert not sel.matches("GW1", {"device": None, "online": "1"}, has_tag=True)
    assert parse({"all": True}) == Selector()
    assert parse({"sns": ["b", "a", "b"]}).sns == ("a", "b")


@pytest.mark.parametrize("doc", [{}, [], {"all": False}, {"nope": 1}, {"sns": []}, {"sns": [1]},
                                 {"tag": "a b"}, {"snPrefix": ""}, {"online": "yes"}, {"version": "x"},
                                 {"version": "a ~ 1"}, {"version": 3}])
def test_bad_selectors_are_invalid_params(doc: object) -> None:
    with pytest.raises(AppError) as err:
        parse(doc)
    assert err.value.status == 400 and err.value.msg.startswith("selector")
