"""Fault runs (``zkpy.testing.faultrun``): kills, pauses, partitions and slow
links on the in-memory ensemble while clients read and write two keys; every
history is checked for linearizability (``zkpy.testing.linearizability``).

With ``linearizableReads`` no run has a stale read; without it, the same
kind of run does, and the checker catches it (so a clean verdict means
something). ``ZKPY_FAULT_SEEDS=N`` runs N seeds of each (``tox -e faultrun``
runs 300); the default keeps the unit suite quick.
"""

from __future__ import annotations

import functools
import os

import pytest

from zkpy.testing import faultrun
from zkpy.testing.linearizability import READ

SEEDS = range(int(os.environ.get("ZKPY_FAULT_SEEDS", "4")))


@functools.cache
def run(seed: int, linear: bool, size: int = 3) -> faultrun.FaultRun:
    return faultrun.run(seed, linear, size=size)


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("seed", SEEDS)
def test_with_the_setting_no_read_is_stale(seed: int, size: int) -> None:
    fr = run(seed, True, size)
    assert fr.result is not None and fr.result.ok, fr.result.explain() if fr.result else ""
    reads = [op for op in fr.history if op.kind == READ]
    assert len(reads) >= 100, "too few reads answered to mean anything"
    assert sum(fr.faults.values()) >= 10, fr.faults


def test_without_the_setting_the_checker_finds_stale_reads() -> None:
    found = []
    for seed in SEEDS:
        fr = run(seed, False, 3)
        assert fr.result is not None
        if not fr.result.ok:
            # What cannot be placed is a read: a write can always go somewhere.
            assert any(op.kind == READ for op in fr.result.stuck), fr.result.explain()
            found.append(seed)
    assert found, "no stale read in any run: the fault run would prove nothing"


def test_every_kind_of_fault_happens() -> None:
    seen: dict[str, int] = {}
    for seed in SEEDS:
        for kind, n in run(seed, True, 3).faults.items():
            seen[kind] = seen.get(kind, 0) + n
    assert set(seen) == {"kill", "pause", "partition", "lag"}, seen


def test_a_run_replays_exactly() -> None:
    a, b = faultrun.run(3, True, steps=150), faultrun.run(3, True, steps=150)
    assert a.history == b.history and a.faults == b.faults
