"""zkpy.net.heap: the collector off while trees are built, nested holds."""

from __future__ import annotations

import gc

import pytest

from zkpy.net import heap


def test_holds_nest_and_a_stray_release_does_nothing() -> None:
    assert gc.isenabled()
    try:
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
    finally:
        gc.unfreeze()


def test_the_last_release_freezes_what_was_built_before_collecting_again() -> None:
    # Otherwise the first allocation after it would start a full collection
    # walking the whole tree that was built with the collector off.
    heap.hold()
    try:
        before = gc.get_freeze_count()
        built = [[i] for i in range(1000)]
        assert gc.get_freeze_count() == before  # (a hold alone freezes nothing)
        heap.release()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(built)
    finally:
        gc.unfreeze()


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


@pytest.mark.skipif(heap._malloc_trim is None, reason="the C library has no malloc_trim")
def test_give_back_returns_free_memory_held_under_live_blocks() -> None:
    # As a snapshot's chunks among clients' znodes: blocks of 256 KiB from malloc's
    # heap (a freed 4 MiB block first lifts glibc's mmap threshold above them),
    # each followed by a small block that stays, so that their memory, once
    # free, is not at the top of the heap, where free() alone would return it.
    lift = bytearray(4 << 20)
    del lift
    chunks, pins = [], []
    for _ in range(200):  # 50 MiB
        chunks.append(bytearray(256 << 10))
        pins.append(bytearray(1024))
    for chunk in chunks:
        chunk[::4096] = b"x" * len(chunk[::4096])  # touched: resident
    before = heap.resident_bytes()
    del chunks
    assert before is not None
    dropped = heap.give_back()
    after = heap.resident_bytes()
    assert after is not None
    assert dropped >= 30 << 20, (before, after, dropped)
    assert before - after >= 30 << 20
    assert len(pins) == 200


def test_give_back_says_zero_without_a_c_library_to_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_malloc_trim", None)
    assert heap.give_back() == 0
