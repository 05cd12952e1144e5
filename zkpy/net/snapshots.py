"""Fuzzy snapshots, as ZooKeeper takes them, without stopping the server.

Every ``snapCount/2 + rand(snapCount/2)`` commits (randomised, as in
ZooKeeper, so members do not all snapshot at once) the server rolls its log
and takes a snapshot: the tree is serialized a slice at a time between reactor
events (the tree keeps changing meanwhile: the logged txns after the
snapshot's starting zxid are replayed over it at recovery, which is idempotent)
and the file is written by a thread.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

from twisted.internet import task, threads
from twisted.python.threadpool import ThreadPool

from zkpy.net import heap
from zkpy.storage.formats import snapshot_name
from zkpy.storage.fs import LOCAL, FileSystem
from zkpy.storage.snapshot import SnapshotMaker, write_snapshot

log = logging.getLogger("zkpy.storage")


class FuzzySnapshots:
    """A fuzzy snapshot every ``snapCount/2 + rand(snapCount/2)`` transactions
    (randomised, as in ZooKeeper, so servers do not all snapshot at once): the
    tree is serialized a slice at a time between reactor events, the file
    written by ``pool``. The owner rolls its log when ``counted`` says one is due,
    then calls ``take``."""

    def __init__(self, reactor: Any, core: Any, snap_dir: str, snap_count: int,
                 force_sync: bool, pool: ThreadPool, fs: FileSystem = LOCAL) -> None:
        self.reactor = reactor
        self.fs = fs
        self.core = core
        self.snap_dir = snap_dir
        self.snap_count = max(snap_count, 2)
        self.force_sync = force_sync
        self.pool = pool
        self.count = 0
        self.due_at = self._threshold()
        self.running = False

    def _threshold(self) -> int:
        half = self.snap_count // 2
        return half + random.randrange(max(half, 1))

    def counted(self, n: int = 1) -> bool:
        """Count ``n`` more transactions; True when a snapshot is due now."""
        self.count += n
        if self.count < self.due_at or self.running:
            return False
        self.count = 0
        self.due_at = self._threshold()
        self.running = True
        return True

    def take(self) -> None:
        started = time.monotonic()
        maker = SnapshotMaker(self.core.tree, self.core.session_timeouts())
        path = os.path.join(self.snap_dir, snapshot_name(maker.zxid))
        log.info("Taking a fuzzy snapshot at zxid 0x%x", maker.zxid)

        def steps() -> Any:
            while not maker.step(2000):
                yield None

        d = task.cooperate(steps()).whenDone()
        d.addCallback(lambda _: threads.deferToThreadPool(
            self.reactor, self.pool, write_snapshot, path, maker.head(), maker.chunks,
            self.force_sync, maker.digest, self.fs))
        d.addCallback(lambda _: self._done(path, maker, started))
        d.addErrback(self._failed, maker)

    def _done(self, path: str, maker: SnapshotMaker, started: float) -> None:
        self.running = False
        # snapshottime: from taking the tree's first slice to the file synced.
        self.core.metrics.summary["snapshottime"].add(int((time.monotonic() - started) * 1000))
        log.info("Snapshot %s written: %d znodes, %d sessions", os.path.basename(path),
                 maker.count, len(maker.sessions))
        maker.chunks.clear()
        heap.give_back()  # the chunks' memory (see zkpy.net.heap)

    def _failed(self, failure: Any, maker: SnapshotMaker) -> None:
        self.running = False
        log.error("Snapshot failed: %s", failure.getErrorMessage())
        maker.chunks.clear()
        heap.give_back()
