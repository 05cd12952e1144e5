"""Durable commits: the transaction log written by one thread, group commit, snapshots.

``LogCommitter`` is the core's commit seam when a data directory is in use.
Proposed transactions are serialized on the reactor thread and queued; one
writer thread appends whatever is queued and forces it to disk in a single
fsync, then hands the whole batch back to the reactor, which commits it in
zxid order. While one batch is being synced the next one accumulates, so under
load many transactions share an fsync and none waits longer than one sync
behind the one before it. Reads never wait for the disk, except behind an
earlier write of their own session (the core keeps that order).

Every ``snapCount/2 + rand(snapCount/2)`` transactions the log is rolled and a
fuzzy snapshot is taken: the tree is serialized a slice at a time between
reactor events, and the file is written by a thread.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from twisted.internet import task, threads
from twisted.python.threadpool import ThreadPool

from zkpy.server.prep import Request
from zkpy.storage.formats import encode_txn, snapshot_name
from zkpy.storage.purge import purge
from zkpy.storage.snapshot import SnapshotMaker, write_snapshot
from zkpy.storage.txnlog import LogWriter

log = logging.getLogger("zkpy.storage")


class LogCommitter:
    def __init__(self, reactor: Any, core: Any, snap_dir: str, log_dir: str, *,
                 prealloc_bytes: int, force_sync: bool, snap_count: int,
                 retain: int = 3) -> None:
        self.reactor = reactor
        self.core = core
        self.snap_dir = snap_dir
        self.log_dir = log_dir
        self.writer = LogWriter(log_dir, prealloc_bytes, force_sync)
        self.force_sync = force_sync
        self.snap_count = max(snap_count, 2)
        self.retain = retain
        self._queue: list[tuple[Request, bytes]] = []
        self._busy = False
        self._roll = False
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="zkpy-txnlog")
        self.snap_pool = ThreadPool(minthreads=0, maxthreads=1, name="zkpy-snapshot")
        self.pool.start()
        self.snap_pool.start()
        self.snapshots = FuzzySnapshots(reactor, core, snap_dir, snap_count, force_sync,
                                        self.snap_pool)
        reactor.addSystemEventTrigger("during", "shutdown", self.close)
        self.batches = 0
        self.synced = 0

    # -- the commit seam --------------------------------------------------------

    def propose(self, req: Request) -> None:
        self._queue.append((req, encode_txn(req.hdr, req.txn, req.digest)))
        if self.snapshots.counted():
            self._roll = True
            # Snapshot once what is queued now has been applied: schedule after it.
            self.reactor.callLater(0, self.snapshots.take)
        if not self._busy:
            self._kick()

    def _kick(self) -> None:
        batch, self._queue = self._queue, []
        roll, self._roll = self._roll, False
        self._busy = True
        d = threads.deferToThreadPool(self.reactor, self.pool, self._write, batch, roll)
        d.addCallbacks(self._written, self._failed, callbackArgs=(batch,))

    def _write(self, batch: list[tuple[Request, bytes]], roll: bool) -> None:
        if roll:
            self.writer.roll()
        self.writer.append_many([(req.hdr.zxid, data) for req, data in batch])
        self.writer.sync()

    def _written(self, _: Any, batch: list[tuple[Request, bytes]]) -> None:
        self._busy = False
        self.batches += 1
        self.synced += len(batch)
        for req, _data in batch:
            self.core.commit(req)
        self.core.flush()
        if self._queue:
            self._kick()

    def _failed(self, failure: Any) -> None:
        # As ZooKeeper does: a server that cannot log cannot promise anything.
        log.critical("Cannot write the transaction log in %s: %s; stopping the server",
                     self.log_dir, failure.getErrorMessage())
        self.reactor.stop()

    def purge(self) -> None:
        threads.deferToThreadPool(self.reactor, self.snap_pool, purge, self.snap_dir,
                                  self.log_dir, self.retain)

    def close(self) -> None:
        """Reactor shutdown: finish the batch in flight (its replies are moot), close."""
        self.pool.stop()
        self.snap_pool.stop()
        self.writer.close()


class FuzzySnapshots:
    """A fuzzy snapshot every ``snapCount/2 + rand(snapCount/2)`` transactions
    (randomised, as in ZooKeeper, so servers do not all snapshot at once): the
    tree is serialized a slice at a time between reactor events, the file
    written by ``pool``. The owner rolls its log when ``counted`` says one is due,
    then calls ``take``."""

    def __init__(self, reactor: Any, core: Any, snap_dir: str, snap_count: int,
                 force_sync: bool, pool: ThreadPool) -> None:
        self.reactor = reactor
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
        maker = SnapshotMaker(self.core.tree, self.core.session_timeouts())
        path = os.path.join(self.snap_dir, snapshot_name(maker.zxid))
        log.info("Taking a fuzzy snapshot at zxid 0x%x", maker.zxid)

        def steps() -> Any:
            while not maker.step(2000):
                yield None

        d = task.cooperate(steps()).whenDone()
        d.addCallback(lambda _: threads.deferToThreadPool(
            self.reactor, self.pool, write_snapshot, path, maker.head(), maker.chunks,
            self.force_sync, maker.digest))
        d.addCallback(lambda _: self._done(path, maker))
        d.addErrback(self._failed)

    def _done(self, path: str, maker: SnapshotMaker) -> None:
        self.running = False
        log.info("Snapshot %s written: %d znodes, %d sessions", os.path.basename(path),
                 maker.count, len(maker.sessions))

    def _failed(self, failure: Any) -> None:
        self.running = False
        log.error("Snapshot failed: %s", failure.getErrorMessage())
