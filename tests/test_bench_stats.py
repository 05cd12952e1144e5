"""The benchmark's pure rules: percentiles, the warm-up steadiness rule,
pairwise ratios and their spread, and how loads, kinds and compared pairs
are read from the command line."""

from __future__ import annotations

import pytest

from bench import stats
from bench.measure import ratio_pairs
from bench.targets import Kind, parse_kinds
from bench.throughput import Load, parse_loads


def test_percentile_is_nearest_rank() -> None:
    vals = list(range(1, 101))  # 1..100
    assert stats.percentile(vals, 50) == 50
    assert stats.percentile(vals, 99) == 99
    assert stats.percentile(vals, 100) == 100
    assert stats.percentile(vals, 0) == 1
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([], 50) is None
    assert stats.percentile([1, 2, 3, 4], 50) == 2


def test_steady_needs_enough_windows_within_tolerance() -> None:
    assert not stats.is_steady([100, 101], last=3, tolerance=0.05)
    assert stats.is_steady([50, 80, 100, 102, 104], last=3, tolerance=0.05)
    # 100..106 is 6 % of the median 104: not within 5 %
    assert not stats.is_steady([100, 104, 106], last=3, tolerance=0.05)
    assert stats.is_steady([100, 104, 106], last=3, tolerance=0.06)
    # a JVM still compiling: rising windows are not steady
    assert not stats.is_steady([10_000, 14_000, 19_000, 25_000], last=3, tolerance=0.05)
    assert not stats.is_steady([0, 0, 0], last=3, tolerance=0.05)


def test_all_steady_needs_every_workload() -> None:
    series = {"0%": [100, 100, 100], "50%": [90, 100, 120]}
    assert not stats.all_steady(series, 3, 0.05)
    series["50%"] += [100, 101]  # the last three are 120, 100, 101: not yet
    assert not stats.all_steady(series, 3, 0.05)
    series["50%"].append(99)
    assert stats.all_steady(series, 3, 0.05)
    assert not stats.all_steady({}, 3, 0.05)


def test_pairwise_ratios_pair_rounds_and_skip_missing() -> None:
    a = [10.0, 12.0, None, 9.0]
    b = [5.0, 4.0, 3.0, 0.0]
    assert stats.pairwise_ratios(a, b) == [2.0, 3.0, None, None]
    assert stats.pairwise_ratios([1.0, 2.0, 3.0], [1.0]) == [1.0]


def test_spread_is_min_median_max() -> None:
    sp = stats.spread([2.0, None, 1.0, 4.0])
    assert sp == stats.Spread(1.0, 2.0, 4.0, 3)
    assert sp.text() == "2.00x (min 1.00x, max 4.00x; 3 pairs)"
    assert stats.spread([None]) is None
    assert stats.Spread(1.5, 1.5, 1.5, 1).text() == "1.50x (1 pair)"


def test_geomean_and_per_op() -> None:
    assert stats.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert stats.geomean([None, 0.0]) is None
    assert stats.per_op(0.5, 1000) == pytest.approx(500.0)
    assert stats.per_op(None, 10) is None
    assert stats.per_op(1.0, 0) is None


def test_loads_presets_and_shapes() -> None:
    assert parse_loads("light,heavy,heavy250,7x3") == [
        Load("light", 32, 32), Load("heavy", 100, 100), Load("heavy250", 250, 100),
        Load("7x3", 7, 3)]
    for bad in ("medium", "0x5", "3x", "x3"):
        with pytest.raises(ValueError):
            parse_loads(bad)


def test_kinds_with_revisions() -> None:
    assert parse_kinds("zkpy@main, zkpy,zk,zookeeper") == [
        Kind("zkpy@main", "zkpy", "main"), Kind("zkpy", "zkpy"), Kind("zookeeper", "zookeeper")]
    with pytest.raises(ValueError):
        parse_kinds("etcd")
    with pytest.raises(ValueError):
        parse_kinds("zookeeper@abc")


def test_ratio_pairs_default_and_explicit() -> None:
    assert ratio_pairs(["zkpy@main", "zkpy", "zookeeper"]) == [
        ("zkpy@main", "zookeeper"), ("zkpy", "zookeeper"), ("zkpy", "zkpy@main")]
    assert ratio_pairs(["zkpy@old", "zkpy"]) == [("zkpy", "zkpy@old")]
    assert ratio_pairs(["zkpy"]) == []
    assert ratio_pairs(["a", "b", "c"]) == [("b", "a"), ("c", "a")]
    assert ratio_pairs(["zkpy", "zookeeper"], "zookeeper/zkpy") == [("zookeeper", "zkpy")]
    with pytest.raises(ValueError):
        ratio_pairs(["zkpy", "zookeeper"], "zkpy/etcd")
