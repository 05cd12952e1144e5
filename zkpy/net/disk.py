"""The one disk writer: Zab's persist ops carried out in order, with group commit.

``DiskWriter`` is the ``zkpy.zab.driver.Disk`` of every server, standalone or
ensemble member. Ops handed to it (txn appends, epoch files, TRUNC, SNAP, log
rolls before a snapshot) are written in order by one thread; whatever
accumulated while the previous batch was being written goes out as the next
batch, with one fsync for all of it (group commit: under load many
transactions share an fsync, and none waits longer than one sync behind the
one before it). Only once a batch is synced does ``on_synced`` release the
messages that promise durability (``send_after_persist``: ACKs, ACKEPOCH,
LEADERINFO, a leader's own ACKs, which is how a write becomes committable).

With forceSync off a write only copies into the page cache: it is done on
the reactor at the end of the turn, cheaper than two thread hops.
A write that fails stops the server: one that cannot persist cannot
acknowledge anything.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from zkpy.storage.fs import LOCAL, FileSystem
from zkpy.storage.opwriter import OpWriter, Roll
from zkpy.zab.driver import Durable
from zkpy.zab.events import PersistOp

log = logging.getLogger("zkpy.storage")

__all__ = ["DiskWriter", "Roll"]


class DiskWriter:
    """The Driver's ``Disk``: persist ops in order, sync, then release what waited."""

    def __init__(self, reactor: Any, snap_dir: str, log_dir: str, last_zxid: int, *,
                 prealloc_bytes: int, force_sync: bool, pool: Any = None,
                 snap_pool: Any = None, fs: FileSystem = LOCAL) -> None:
        self.reactor = reactor
        self.snap_dir = snap_dir
        self.log_dir = log_dir
        self.force_sync = force_sync
        self.fs = fs
        # What a batch writes and syncs is zkpy.storage.opwriter's to decide.
        self.opwriter = OpWriter(snap_dir, log_dir, last_zxid, prealloc_bytes=prealloc_bytes,
                            force_sync=force_sync, fs=fs)
        self.writer = self.opwriter.writer
        self._ops: list[PersistOp | Roll] = []
        self._after: list[Durable] = []
        self._busy = False
        self.on_synced: Any = None  # (after sends, last zxid) -> None
        # One thread writes the log; another writes snapshots (tests pass their own).
        if pool is None:
            pool = ThreadPool(minthreads=1, maxthreads=1, name="zkpy-txnlog")
            pool.start()
        if snap_pool is None:
            snap_pool = ThreadPool(minthreads=0, maxthreads=1, name="zkpy-snapshot")
            snap_pool.start()
        self.pool = pool
        self.snap_pool = snap_pool
        self.batches = 0

    def submit(self, ops: list[Any], after: list[Durable]) -> None:
        self._ops.extend(ops)
        self._after.extend(after)
        if not self._busy:
            self._kick()

    def _kick(self) -> None:
        self._busy = True
        if not self.force_sync:
            # Without fsync a write only copies into the page cache: cheaper than
            # the two thread hops, which a write pays in series on the leader and
            # on a follower. Done at the end of this reactor turn, so everything
            # submitted in the turn shares one batch.
            self.reactor.callLater(0, self._write_here)
            return
        ops, self._ops = self._ops, []
        after, self._after = self._after, []
        d = threads.deferToThreadPool(self.reactor, self.pool, self._write, ops)
        d.addCallbacks(self._written, self._failed, callbackArgs=(after,))

    def _write_here(self) -> None:
        ops, self._ops = self._ops, []
        after, self._after = self._after, []
        try:
            last = self._write(ops)
        except Exception:
            self._failed(Failure())
            return
        self._written(last, after)

    def _write(self, ops: list[Any]) -> int:
        return self.opwriter.write(ops)

    def _written(self, last: int, after: list[Durable]) -> None:
        self._busy = False
        self.batches += 1
        if self.on_synced is not None:
            self.on_synced(after, last)
        if self._ops or self._after:
            self._kick()

    def _failed(self, failure: Any) -> None:
        log.critical("Cannot write to %s: %s; stopping the server (a member that cannot "
                     "persist cannot acknowledge anything)", self.log_dir,
                     failure.getErrorMessage())
        self.reactor.stop()

    def close(self) -> None:
        self.pool.stop()
        self.snap_pool.stop()
        self.opwriter.close()
