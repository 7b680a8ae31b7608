"""Percentiles from 10 ms bins, checked against hand-computed values."""

from __future__ import annotations

import pytest

from apitally_hub.query.percentiles import merge_bins, percentile, percentiles


def test_protocol_example_by_hand() -> None:
    # {"0": 30, "10": 9, "120": 3}: 42 requests.
    # p50: rank ceil(21.0) = 21 -> ranks 1-30 are in bin 0 -> 0 ms
    # p95: rank ceil(39.9) = 40 -> ranks 31-39 in bin 10, rank 40 in bin 120 -> 120 ms
    # p99: rank ceil(41.58) = 42 -> bin 120 -> 120 ms
    # p90: rank ceil(37.8) = 38 -> bin 10 -> 10 ms
    bins = {0: 30, 10: 9, 120: 3}
    assert percentiles(bins) == {"p50": 0, "p95": 120, "p99": 120}
    assert percentile(bins, 90) == 10


def test_rank_on_a_bin_boundary_stays_in_the_lower_bin() -> None:
    # 100 requests: 50 in [20, 30) ms, 50 in [40, 50) ms. p50 = rank 50 -> the last one of bin 20.
    bins = {40: 50, 20: 50}
    assert percentile(bins, 50) == 20
    assert percentile(bins, 50.5) == 40
    assert percentile(bins, 100) == 40


def test_float_rounding_does_not_push_the_rank_up() -> None:
    # 0.07 * 100 == 7.000000000000001 in floating point; the rank must stay 7.
    bins = {0: 7, 10: 93}
    assert percentile(bins, 7) == 0


def test_empty_histogram_has_no_percentile() -> None:
    assert percentile({}, 50) is None
    assert percentile({10: 0}, 99) is None


def test_single_request() -> None:
    assert percentiles({250: 1}) == {"p50": 250, "p95": 250, "p99": 250}


@pytest.mark.parametrize("p", [0, -1, 100.1])
def test_percentile_must_be_in_range(p: float) -> None:
    with pytest.raises(ValueError):
        percentile({0: 1}, p)


def test_merge_bins_adds_counts() -> None:
    assert merge_bins({0: 1, 10: 2}, {10: 3, 20: 4}) == {0: 1, 10: 5, 20: 4}
