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
  the last release freezes what is alive before turning it back on;
- ``settle()``: what is alive now (the tree just built) moves to the
  permanent generation (``gc.freeze``), so later collections walk only what
  was allocated since. Frozen objects that die later are still freed by
  reference counting; only garbage in cycles among them would stay;
- and from then on the youngest generation is collected every ``YOUNG`` net
  allocations, not every 700. Under load a write's records (request, change,
  txn, header, digest, log entry) live as long as it is in flight, 10,000
  writes under the benchmark's heavy load, and every young collection walks
  all of them, finds them alive and moves them on. The count is of *net*
  allocations (freeing a tracked object takes one off), so what sets how
  often the young generation is collected is how far the live population
  grows past where the last collection left it. Under the heavy load
  (100 sessions x 100 writes in flight, 3 members) it rose up to 77,000-
  100,000 above that mark (sampled every 5 ms with the collector off). With
  CPython's 700, each of those objects was walked by a young, a middle and
  often a full collection: about 6 % of a standalone server's CPU. With
  20,000 the young collections still came every 0.1 s or so, each walking
  the in-flight writes (10 ms each): 2.4-2.7 s of 24-33 s of CPU per member,
  8-12 %, for collections that found 80 objects of garbage in all. With
  200,000 the same load ran without one collection. Garbage in cycles
  (which this server makes little of) is still found once 200,000 of it has
  piled up. A young collection walks what grew since the last one: building
  a tree of a million znodes (``bench.seed.build_tree``) paused for 5 young
  collections, the longest 40 ms, where 20,000 made 46 young and 4 middle
  ones, the longest 67 ms. The older generations keep their default ratios.

The C allocator has its own say in how much memory the process keeps. A
snapshot is serialized into chunks of about 400 KB, 200 MB of them for a
million znodes, which glibc's malloc takes from its heap while the clients'
new znodes land around them; once the file is written the chunks are free,
but malloc returns to the system only free memory at the top of its heap, so
the rest can stay resident. How much stays depends on how the chunks and the
znodes interleave: creating 500,000 znodes through the client port (the
default snapCount: five snapshots) left 723-777 B of RSS per znode in three
runs and 586-590 B in three others, 603 B with no snapshot taken; in the
process that held 723 B, ``malloc_trim`` brought it to 582 B. ``give_back()``
asks malloc to return every free page it holds (glibc's ``malloc_trim``); it
is called once a tree is built and once a snapshot is written or sent, and
took 10 ms to return 390 MB.

Process policy, hence here in ``zkpy.net`` (the pure core never touches it).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("zkpy.heap")

_holds = 0

#: Net allocations between two collections of the youngest generation (default 700).
YOUNG = 200_000


def hold() -> None:
    """Turn the collector off until the matching ``release``."""
    global _holds
    _holds += 1
    gc.disable()


def release() -> None:
    """The collector back on once the last hold ends, with what was built meanwhile
    frozen first: the allocations counted while it was off would otherwise start a
    full collection at once, a walk of the whole new tree (0.3 s at start-up with
    1M znodes) just before ``settle`` takes it out of the walks anyway."""
    global _holds
    if _holds > 0:
        _holds -= 1
        if _holds == 0:
            gc.freeze()
            gc.enable()


def settle() -> None:
    """Take everything alive now out of the collector's walks; collect the young
    generation every ``YOUNG`` allocations from now on; return what building the
    tree left free to the system."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
    give_back()


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to ask
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_malloc_trim = _find_malloc_trim()


def resident_bytes() -> int | None:
    """This process's resident set now (None where /proc does not say)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def give_back() -> int:
    """Return the C allocator's free pages to the system; the bytes of resident
    memory that dropped (0 where there is no ``malloc_trim`` or no /proc)."""
    if _malloc_trim is None:
        return 0
    before = resident_bytes()
    started = time.monotonic()
    _malloc_trim(0)
    after = resident_bytes()
    if before is None or after is None:
        return 0
    dropped = max(before - after, 0)
    log.debug("Returned %.1f MiB of free memory to the system in %.1f ms (resident now "
              "%.1f MiB)", dropped / 2**20, (time.monotonic() - started) * 1000, after / 2**20)
    return dropped
