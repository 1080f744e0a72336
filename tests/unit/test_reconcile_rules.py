"""The pure choices of presence reconciliation (adapter/devices/reconcile.py)."""

from __future__ import annotations

from adapter.devices.reconcile import epoch_ms, to_offline, to_online


def test_emqx_times_are_read_as_epoch_ms() -> None:
    assert epoch_ms("2024-01-01T12:34:56.789+08:00") == 1704083696789
    assert epoch_ms("2024-01-01T04:34:56.789Z") == 1704083696789
    assert epoch_ms(1704083696789) == 1704083696789
    assert epoch_ms(None) is None and epoch_ms("undefined") is None and epoch_ms(True) is None


def test_only_devices_online_since_before_the_run_and_not_listed_go_offline() -> None:
    snapshot = {"GONE": ["1", "1", "1000", None, "2"], "LISTED": ["1", "1", "1000", None, "2"],
                "NEWER": ["1", "1", "5000", None, "2"]}  # connected after the run started: EMQX may not list it
    assert to_offline(snapshot, {"LISTED"}, started_ms=4000) == ["GONE"]


def test_only_known_offline_devices_with_a_newer_connection_come_online() -> None:
    states = {"BACK": ["1", "0", "1000", "2000", "3"], "ENDED": ["1", "0", "1000", "3000", "3"],
              "NOTDEV": [None, "0", "1000", "2000", "1"], "NOHASH": [None, None, None, None, None],
              "ON": ["1", "1", "1000", None, "2"]}
    connected = {"BACK": 2500, "ENDED": 2500, "NOTDEV": 2500, "NOHASH": 2500, "ON": 2500}
    assert to_online(states, connected) == ["BACK"]

