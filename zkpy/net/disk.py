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
import os
from dataclasses import dataclass
from typing import Any

from twisted.internet import threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from zkpy.storage.txnlog import LogWriter
from zkpy.storage.zabdisk import (
    ACCEPTED_EPOCH,
    CURRENT_EPOCH,
    install_snapshot,
    truncate_log,
    write_epoch,
)
from zkpy.zab.driver import Durable
from zkpy.zab.events import Append, InstallSnapshot, PersistOp, SaveEpoch, Truncate

log = logging.getLogger("zkpy.storage")


@dataclass(frozen=True)
class Roll:
    """Start a new log file (before a snapshot, so the logs after it are separate)."""


class DiskWriter:
    """The Driver's ``Disk``: persist ops in order, sync, then release what waited."""

    def __init__(self, reactor: Any, snap_dir: str, log_dir: str, last_zxid: int, *,
                 prealloc_bytes: int, force_sync: bool, pool: Any = None,
                 snap_pool: Any = None) -> None:
        self.reactor = reactor
        self.snap_dir = snap_dir
        self.log_dir = log_dir
        self.force_sync = force_sync
        self.writer = LogWriter(log_dir, prealloc_bytes, force_sync)
        self.last_zxid = last_zxid
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
        appends: list[tuple[int, bytes]] = []
        writer = self.writer
        last = self.last_zxid
        for op in ops:
            if isinstance(op, Append):
                appends.append((op.zxid, op.txn))
                last = op.zxid
                continue
            if appends:
                writer.append_many(appends)
                appends = []
            if isinstance(op, SaveEpoch):
                writer.sync()
                if op.accepted is not None:
                    write_epoch(self.snap_dir, ACCEPTED_EPOCH, op.accepted, self.force_sync)
                if op.current is not None:
                    write_epoch(self.snap_dir, CURRENT_EPOCH, op.current, self.force_sync)
            elif isinstance(op, Truncate):
                writer.roll()
                dropped = truncate_log(self.log_dir, op.zxid, self.force_sync)
                log.info("Truncated the log to 0x%x (%d transactions dropped)", op.zxid, dropped)
                last = op.zxid
            elif isinstance(op, InstallSnapshot):
                writer.roll()
                path = install_snapshot(self.snap_dir, op.zxid, op.data, self.force_sync)
                log.info("Stored the leader's snapshot as %s", os.path.basename(path))
                last = op.zxid
            elif isinstance(op, Roll):
                writer.roll()
        if appends:
            writer.append_many(appends)
        writer.sync()
        self.last_zxid = last
        return last

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
        self.writer.close()
