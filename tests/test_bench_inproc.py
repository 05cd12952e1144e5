"""bench.inproc's workloads run and do what they count (not how fast: that is
for the benchmark itself)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bench import inproc


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """The workloads set the collector up as a server does (frozen heap, rarer
    young collections): put it back for the rest of the test run."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_ensemble_workload_replicates_every_write() -> None:
    # run_ensemble checks that every member applied every write before returning.
    assert inproc.run_ensemble(3, "setData", 300) > 0
    assert inproc.run_ensemble(3, "getData", 300) > 0
    assert inproc.run_ensemble(3, "setup", 0) == 0.0


def test_the_ensemble_spreads_its_clients_over_every_member() -> None:
    sim, conns, _ = inproc._setup_ensemble(3)
    assert len(conns) == 30
    assert {c.core for c in conns} == {mb.core for mb in sim.members.values()}
    assert all(mb.core.tree.get("/k/99") is not None for mb in sim.members.values())
