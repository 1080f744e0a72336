"""The per-minute series' ring and windows (adapter/stats/series.py): pure, no Redis."""

from __future__ import annotations

from adapter.stats import series
from adapter.stats.series import RING, SLOT, Kind, buckets, decode, per_minute, slot, window


def ring_of(samples: dict[int, tuple[int, ...]]) -> bytes:
    """A ring as the sampler leaves it: per minute its first sample, then each later one (`values`)."""
    raw = bytearray(RING * SLOT.size)
    for minute, values in samples.items():
        for n, value in enumerate(values):
            offset, data = slot(minute, value, opens=n == 0)
            raw[offset:offset + len(data)] = data
    return bytes(raw)


def test_a_slot_is_the_minute_mod_the_ring_and_a_newer_minute_takes_it_over() -> None:
    m = 29_000_000
    assert slot(m, 5, opens=True)[0] == (m % RING) * SLOT.size
    assert slot(m, 5, opens=False)[0] == (m % RING) * SLOT.size + 12
    assert decode(ring_of({m: (5, 6, 9)})) == {m: (5, 9)}
    assert decode(ring_of({m: (5,), m + RING: (7,)})) == {m + RING: (7, 7)}  # the same slot, a day and more later
    assert decode(b"") == decode(None) == {}
    assert decode(bytes(10)) == {}  # a short string (SETRANGE pads with zeros): no sample


def test_a_ring_is_bounded_whatever_is_written() -> None:
    raw = ring_of({m: (m,) for m in range(29_000_000, 29_000_000 + 3 * RING)})
    assert len(raw) == RING * SLOT.size == 30_000
    assert min(decode(raw)) == 29_000_000 + 2 * RING  # only the last RING minutes are left


def test_a_counter_counts_each_minute_from_the_totals() -> None:
    # 10: first sampled minute (what its samples saw); 13 not sampled; 14 after the gap; 15: reset
    totals = {10: (90, 100), 11: (101, 103), 12: (103, 103), 14: (118, 120), 15: (2, 4)}
    assert per_minute(totals, Kind.COUNTER, 10, 16) == [10, 3, 0, None, 2, 4, None]
    assert per_minute(totals, Kind.GAUGE, 10, 13) == [100, 103, 103, None]


def test_buckets_sum_counters_and_average_gauges() -> None:
    assert buckets([1, 2, None, 4, None, None], 100, 2, Kind.COUNTER) == [(6000, 3), (6120, 4), (6240, None)]
    assert buckets([1, 2, None, 4], 100, 3, Kind.GAUGE) == [(6000, 1.5), (6180, 4)]
    assert buckets([1, 2], 100, 1, Kind.COUNTER) == [(6000, 1), (6060, 2)]


def test_a_window_reads_a_ring_between_two_times() -> None:
    raw = ring_of({1000: (5,), 1001: (6, 8), 1002: (20,)})
    assert window(raw, Kind.COUNTER, 1000 * 60, 1002 * 60 + 59, 60) == [(60000, 0), (60060, 3), (60120, 12)]
    assert window(raw, Kind.GAUGE, 1001 * 60, 1002 * 60, 120) == [(60060, 14)]
    assert window(None, Kind.GAUGE, 60, 120, 60) == [(60, None), (120, None)]


def test_every_target_metric_names_its_kind_and_field() -> None:
    targets = {n: m for n, m in series.METRICS.items() if m.target}
    assert {n for n, m in series.METRICS.items() if m.device} == {"device.online"}
    assert set(targets) == {"route.delivered", "route.failed", "callback.delivered", "callback.failed"}
    assert {m.field for m in targets.values()} == set(series.TARGET_FIELDS)
    assert series.METRICS["devices.online"].kind is Kind.GAUGE
