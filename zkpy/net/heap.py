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
  reference counting; only garbage in cycles among them would stay;
- and from then on the youngest generation is collected every ``YOUNG`` net
  allocations, not every 700. Under load a write's records (request, change,
  txn, header, digest, log entry) live as long as it is in flight, 10,000
  writes under the benchmark's heavy load, so with the default each of them
  was walked by a young, a middle and often a full collection before
  reference counting freed it: about 6 % of a standalone server's CPU, for
  collections that found no garbage at all. With 20,000 the collector took
  half that (0.88 s against 1.68 s in 22 s of server CPU under the heavy
  load), and one young collection about 5 ms. The older generations keep
  their default ratios, so garbage in cycles is still found within a few
  million allocations.

Process policy, hence here in ``zkpy.net`` (the pure core never touches it).
"""

from __future__ import annotations

import gc

_holds = 0

#: Net allocations between two collections of the youngest generation (default 700).
YOUNG = 20_000


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
    """Take everything alive now out of the collector's walks; collect the young
    generation every ``YOUNG`` allocations from now on."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
