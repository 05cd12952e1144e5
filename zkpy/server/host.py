"""What the pure core asks of the machine it runs on, behind one small interface.

The core never reads a clock, a random source or the file system itself; the
few facts it reports or needs from outside come through ``ServerCore.host``:

- ``random_bytes(n)``: nonces for SASL DIGEST-MD5;
- ``dir_size(path)``: bytes in a data directory (``conf``, ``dirs``);
- ``fd_counts()``: open and maximum file descriptors (``mntr``), or None;
- ``environment()``: ZooKeeper's Environment.list entries after
  ``zookeeper.version`` (``envi``, the AdminServer);
- ``monotonic_ns()``: a monotonic clock in nanoseconds, to time the core's
  own stages for the metrics (how long a request waited before it was routed,
  prep, proposal, commit, final processing); the turn's ``now`` cannot, as
  such a stage ends in the turn it began. Read once or twice per request, so
  the real host hands over ``time.monotonic_ns`` itself (a builtin call).

``zkpy.net.host.SystemHost`` is the real machine; ``PlainHost`` here answers
from nothing but a seed, for simulations and tests that want the same answers
every run.
"""

from __future__ import annotations

import random
from typing import Protocol


class Host(Protocol):
    def random_bytes(self, n: int) -> bytes: ...

    def dir_size(self, path: str) -> int: ...

    def fd_counts(self) -> tuple[int, int] | None: ...

    def environment(self) -> list[tuple[str, str]]: ...

    def monotonic_ns(self) -> int: ...


class PlainHost:
    """A host with no disk or process to report on; its randomness is seeded."""

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)
        #: What ``monotonic_ns`` reads: moved only by whoever drives this host (tests).
        self.clock_ns = 0

    def random_bytes(self, n: int) -> bytes:
        return self._random.randbytes(n)

    def dir_size(self, path: str) -> int:
        return 0

    def fd_counts(self) -> tuple[int, int] | None:
        return None

    def environment(self) -> list[tuple[str, str]]:
        return []

    def monotonic_ns(self) -> int:
        return self.clock_ns
