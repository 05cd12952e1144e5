"""The garbage collector and a big tree.

CPython's cyclic collector walks every container object it tracks in a full
collection: with a million znodes that took 1.3-1.5 s here (a tree from
``bench.seed.build_tree(1_000_000, 100)``), one stall of the event loop each
time, and building a tree that size triggers many of them (loading a 1M
znode snapshot took 7.1 s of CPU with the collector on, 4.9 s with it off).
A tree has no reference cycles (a node refers to its data, its interned ACL
and its children's names, never back up), so reference counting frees what
it drops, collector or not. Hence:

- ``hold()`` / ``release()``: the collector is off while a tree is built
  (start-up, a learner reading its leader's SNAP); counted, so holds nest;
- ``settle()``: what is alive now (the tree just built) moves to the
  permanent generation (``gc.freeze``), so later collections walk only what
  was allocated since. Frozen objects that die later are still freed by
  reference counting; only garbage in cycles among them would stay.

Process policy, hence here in ``zkpy.net`` (the pure core never touches it).
"""

from __future__ import annotations

import gc

_holds = 0


def hold() -> None:
    """Turn the collector off until the matching ``release``."""
    global _holds
    _holds += 1
    gc.disable()


def release() -> None:
    global _holds
    if _holds > 0:
        _holds -= 1
        if _holds == 0:
            gc.enable()


def settle() -> None:
    """Take everything alive now out of the collector's walks."""
    gc.freeze()
