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
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    heap.settle()
    try:
        assert gc.get_freeze_count() >= before + len(keep)
        # The young generation is collected less often; the older ones keep their ratios.
        assert gc.get_threshold() == (heap.YOUNG, 10, 10) and heap.YOUNG > 700
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
