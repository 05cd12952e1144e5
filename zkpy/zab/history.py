"""A peer's accepted history in memory: txns in zxid order after a base.

Everything up to ``base`` is summarised by a snapshot (or was applied and then
trimmed away); the entries after it are held. A leader can serve DIFF/TRUNC
from the held entries (ZooKeeper's in-memory committed log, bounded by
commitLogCount) and falls back to SNAP for anyone behind ``base``.
Owns no disk and decides nothing about commits.

Trimming happens on every commit, so it must not cost a copy of the lists:
entries before ``_start`` are dead and the lists are compacted only once the
dead part outgrows the live one.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right


class History:
    def __init__(self, base: int = 0, entries: list[tuple[int, bytes]] | None = None) -> None:
        self.base = base
        self.zxids: list[int] = []
        self.txns: list[bytes] = []
        self._start = 0  # zxids[:_start] are trimmed away
        for zxid, txn in entries or []:
            if zxid > base:
                self.append(zxid, txn)

    @property
    def last_zxid(self) -> int:
        return self.zxids[-1] if len(self.zxids) > self._start else self.base

    def append(self, zxid: int, txn: bytes) -> None:
        if zxid <= self.last_zxid:
            raise ValueError(f"zxid 0x{zxid:x} does not follow 0x{self.last_zxid:x}")
        self.zxids.append(zxid)
        self.txns.append(txn)

    def _index(self, zxid: int) -> int:
        """Position of ``zxid`` among the held entries, or -1."""
        i = bisect_left(self.zxids, zxid, self._start)
        return i if i < len(self.zxids) and self.zxids[i] == zxid else -1

    def holds(self, zxid: int) -> bool:
        """Is ``zxid`` the base or a held entry (so a history ending there is our prefix)?"""
        return zxid == self.base or self._index(zxid) >= 0

    def before(self, zxid: int) -> int:
        """The largest zxid we hold that is smaller than ``zxid`` (the base if none)."""
        i = bisect_left(self.zxids, zxid, self._start)
        return self.zxids[i - 1] if i > self._start else self.base

    def next_after(self, zxid: int) -> int | None:
        """The smallest held zxid larger than ``zxid`` (None if none)."""
        i = bisect_right(self.zxids, zxid)
        return self.zxids[i] if i < len(self.zxids) else None

    def txn(self, zxid: int) -> bytes | None:
        i = self._index(zxid)
        return self.txns[i] if i >= 0 else None

    def after(self, zxid: int, upto: int | None = None) -> list[tuple[int, bytes]]:
        """Held entries with ``zxid < z <= upto`` (``upto`` None: to the end)."""
        lo = bisect_right(self.zxids, zxid, self._start)
        hi = len(self.zxids) if upto is None else bisect_right(self.zxids, upto, lo)
        return list(zip(self.zxids[lo:hi], self.txns[lo:hi], strict=True))

    def truncate(self, zxid: int) -> None:
        """Forget every entry after ``zxid``."""
        i = bisect_right(self.zxids, zxid, self._start)
        del self.zxids[i:]
        del self.txns[i:]

    def reset(self, base: int) -> None:
        """Forget everything: the state up to ``base`` now comes from a snapshot."""
        self.base = base
        self.zxids.clear()
        self.txns.clear()
        self._start = 0

    def trim(self, applied: int, keep: int) -> None:
        """Drop applied entries, keeping the newest ``keep`` of them in memory."""
        n_applied = bisect_right(self.zxids, applied, self._start)
        start = n_applied - keep
        if start > self._start:
            self.base = self.zxids[start - 1]
            self._start = start
            if start > len(self.zxids) - start:
                del self.zxids[:start]
                del self.txns[:start]
                self._start = 0

    def __len__(self) -> int:
        return len(self.zxids) - self._start
