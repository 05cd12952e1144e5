"""Fault runs (``zkpy.testing.faultrun``): kills, pauses, partitions and slow
links on the in-memory ensemble while clients read and write two keys; every
history is checked for linearizability (``zkpy.testing.linearizability``).

With ``linearizableReads`` no run has a stale read; without it, the same
kind of run does, and the checker catches it (so a clean verdict means
something). Runs whose packets are stepped a read at a time (as
zkpy.net.peerlinks does) and whose clients pipeline syncs also check that no
answer overtakes an older request of its session. ``ZKPY_FAULT_SEEDS=N`` runs
N seeds of each (``tox -e faultrun`` runs 300); the default keeps the unit
suite quick.
"""

from __future__ import annotations

import functools
import os

import pytest

from zkpy.testing import faultrun
from zkpy.testing.linearizability import READ

SEEDS = range(int(os.environ.get("ZKPY_FAULT_SEEDS", "4")))


@functools.cache
def run(seed: int, linear: bool, size: int = 3, batch: bool = False) -> faultrun.FaultRun:
    """``batch``: quorum packets stepped a read at a time, as zkpy.net.peerlinks
    does, and some requests with a sync pipelined before or after them."""
    if batch:
        return faultrun.run(seed, linear, size=size, batch_reads=True, sync_ratio=0.3)
    return faultrun.run(seed, linear, size=size)


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("seed", SEEDS)
def test_with_the_setting_no_read_is_stale(seed: int, size: int, batch: bool) -> None:
    fr = run(seed, True, size, batch)
    assert fr.result is not None and fr.result.ok, fr.result.explain() if fr.result else ""
    assert fr.disorder == []
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


@pytest.mark.parametrize("linear", [False, True])
def test_no_answer_overtakes_an_older_request_of_its_session(linear: bool) -> None:
    """Pipelined syncs beside reads and writes, packets stepped a read at a
    time: every session is answered in its order (a sync's SYNC and a write's
    COMMIT that share a read once came out of order; tests/test_sync_order.py)."""
    for seed in SEEDS:
        fr = run(seed, linear, 3, True)
        assert fr.disorder == [], (seed, fr.disorder[:5])
        assert sum(1 for op in fr.history if op.end is not None) >= 100


def test_every_kind_of_fault_happens() -> None:
    seen: dict[str, int] = {}
    for seed in SEEDS:
        for kind, n in run(seed, True, 3).faults.items():
            seen[kind] = seen.get(kind, 0) + n
    assert set(seen) == {"kill", "pause", "partition", "lag"}, seen


@pytest.mark.parametrize("batch", [False, True])
def test_a_run_replays_exactly(batch: bool) -> None:
    kw = {"batch_reads": True, "sync_ratio": 0.3} if batch else {}
    a, b = faultrun.run(3, True, steps=150, **kw), faultrun.run(3, True, steps=150, **kw)
    assert a.history == b.history and a.faults == b.faults
