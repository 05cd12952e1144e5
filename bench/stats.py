"""Pure arithmetic of the benchmark: percentiles, the warm-up steadiness
rule, pairwise ratios and their spread.

Contract: no I/O, no clock, no processes; every function takes numbers and
returns numbers (or ``None`` where a value is missing), so the rules that
decide what is printed can be unit-tested (tests/test_bench_stats.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(sorted_vals: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (``None`` if empty):
    the smallest value with at least *p* % of the values at or below it."""
    if not sorted_vals:
        return None
    rank = math.ceil(p / 100.0 * len(sorted_vals))
    return sorted_vals[min(len(sorted_vals), max(1, rank)) - 1]


def median(vals: Iterable[float | None]) -> float | None:
    """Median of the values that are not ``None`` (``None`` if there are none)."""
    got = [v for v in vals if v is not None]
    return statistics.median(got) if got else None


def geomean(vals: Iterable[float | None]) -> float | None:
    """Geometric mean of the positive values (``None`` if there are none)."""
    got = [v for v in vals if v is not None and v > 0]
    if not got:
        return None
    return math.exp(sum(math.log(v) for v in got) / len(got))


def relative_range(vals: Sequence[float]) -> float | None:
    """(max - min) / median: how far apart a few measurements are."""
    m = statistics.median(vals) if vals else 0
    if not vals or m <= 0:
        return None
    return (max(vals) - min(vals)) / m


def is_steady(series: Sequence[float], last: int, tolerance: float) -> bool:
    """The warm-up rule: the last *last* windows agree within *tolerance*,
    i.e. (max - min) / median of them is at most *tolerance*."""
    if last < 1 or len(series) < last:
        return False
    spread = relative_range(series[-last:])
    return spread is not None and spread <= tolerance


def all_steady(series_by_key: dict[str, Sequence[float]], last: int, tolerance: float) -> bool:
    """Every series (one per workload of the warm-up cycle) is steady."""
    return bool(series_by_key) and all(is_steady(s, last, tolerance)
                                       for s in series_by_key.values())


@dataclass(frozen=True)
class Spread:
    """Min, median and max of a set of ratios, and how many there were."""

    lo: float
    mid: float
    hi: float
    n: int

    def text(self, spec: str = ".2f", unit: str = "x") -> str:
        if self.n == 1:
            return "%s%s (1 pair)" % (format(self.mid, spec), unit)
        return "%s%s (min %s%s, max %s%s; %d pairs)" % (
            format(self.mid, spec), unit, format(self.lo, spec), unit,
            format(self.hi, spec), unit, self.n)


def spread(vals: Iterable[float | None]) -> Spread | None:
    """Min/median/max of the values that are not ``None``."""
    got = [v for v in vals if v is not None]
    if not got:
        return None
    return Spread(min(got), statistics.median(got), max(got), len(got))


def pairwise_ratios(a: Sequence[float | None], b: Sequence[float | None]) -> list[float | None]:
    """Round by round, a[i] / b[i] (``None`` where either is missing or b is 0):
    the A-B pairs of an A-B-A-B run."""
    out: list[float | None] = []
    for x, y in zip(a, b, strict=False):
        out.append(x / y if x is not None and y else None)
    return out


def per_op(total: float | None, ops: int) -> float | None:
    """*total* (e.g. CPU seconds) per operation in microseconds."""
    if total is None or ops <= 0:
        return None
    return total * 1e6 / ops
