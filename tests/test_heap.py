"""zkpy.net.heap: the collector off while trees are built, nested holds."""

from __future__ import annotations

import gc

from zkpy.net import heap


def test_holds_nest_and_a_stray_release_does_nothing() -> None:
    assert gc.isenabled()
    heap.hold()
    heap.hold()
    heap.release()
    assert not gc.isenabled()
    heap.release()
    assert gc.isenabled()
    heap.release()  # more releases than holds: the collector stays on
    heap.hold()
    assert not gc.isenabled()
    heap.release()
    assert gc.isenabled()


def test_settle_takes_what_lives_out_of_the_walks() -> None:
    keep = [[i] for i in range(1000)]
    before = gc.get_freeze_count()
    heap.settle()
    try:
        assert gc.get_freeze_count() >= before + len(keep)
    finally:
        gc.unfreeze()
