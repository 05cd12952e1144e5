"""Zab's persist ops carried out on a data directory, in order, then synced.

``OpWriter.write(ops)`` is the body of every server's disk writer
(``zkpy.net.disk.DiskWriter`` runs it on its thread) and of the power-loss
simulation (``zkpy.testing.powersim`` runs it on a simulated file system):
the same code decides what is written, in what order, and what is synced
before a batch counts as persisted.

What ``write`` promises when it returns (with forceSync on): everything the
batch wrote is durable, names included. In order, per op:

- ``Append``: buffered into one write per run of appends;
- ``SaveEpoch``: the log synced first (the epoch must not get ahead of the
  history it promises), then each epoch file replaced atomically and durably;
- ``Truncate`` (TRUNC): the log file closed, then ``truncate_log`` (durable);
- ``InstallSnapshot`` (SNAP): the log file closed, the snapshot stored durably;
- ``Roll``: the log file closed (the next append starts a new file).

The last thing is a sync of the current log file. Blocking file I/O, no reactor.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zkpy.storage.fs import LOCAL, FileSystem
from zkpy.storage.txnlog import LogWriter
from zkpy.storage.zabdisk import (
    ACCEPTED_EPOCH,
    CURRENT_EPOCH,
    install_snapshot,
    truncate_log,
    write_epoch,
)
from zkpy.zab.events import Append, InstallSnapshot, SaveEpoch, Truncate

log = logging.getLogger("zkpy.storage")


@dataclass(frozen=True)
class Roll:
    """Start a new log file (before a snapshot, so the logs after it are separate)."""


class OpWriter:
    def __init__(self, snap_dir: str, log_dir: str, last_zxid: int, *, prealloc_bytes: int,
                 force_sync: bool, fs: FileSystem = LOCAL) -> None:
        self.snap_dir = snap_dir
        self.log_dir = log_dir
        self.snapshot_seconds: list[float] = []  # each leader's snapshot stored (metrics)
        self.force_sync = force_sync
        self.fs = fs
        self.writer = LogWriter(log_dir, prealloc_bytes, force_sync, fs)
        self.last_zxid = last_zxid

    def write(self, ops: Sequence[Any]) -> int:
        """Carry out ``ops`` and sync; returns the zxid the log now ends at. On a
        failure (OSError) the log is cut back to what was synced before it is
        raised: the caller stops the server, which must not restart on entries
        that never reached the disk."""
        try:
            return self._write(ops)
        except OSError:
            self.writer.discard_unsynced()
            raise

    def _write(self, ops: Sequence[Any]) -> int:
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
                self._save_epoch(op)
            elif isinstance(op, Truncate):
                writer.roll()
                dropped = truncate_log(self.log_dir, op.zxid, self.force_sync, self.fs)
                log.info("Truncated the log to 0x%x (%d transactions dropped)", op.zxid, dropped)
                last = op.zxid
            elif isinstance(op, InstallSnapshot):
                writer.roll()
                started = time.monotonic()
                path = install_snapshot(self.snap_dir, op.zxid, op.data, self.force_sync,
                                        self.fs)
                # (the metrics' snapshottime, as a learner's takeSnapshot after a SNAP)
                self.snapshot_seconds.append(time.monotonic() - started)
                log.info("Stored the leader's snapshot as %s", os.path.basename(path))
                last = op.zxid
            elif isinstance(op, Roll):
                writer.roll()
        if appends:
            writer.append_many(appends)
        writer.sync()
        self.last_zxid = last
        return last

    def _save_epoch(self, op: SaveEpoch) -> None:
        if op.accepted is not None:
            write_epoch(self.snap_dir, ACCEPTED_EPOCH, op.accepted, self.force_sync, self.fs)
        if op.current is not None:
            write_epoch(self.snap_dir, CURRENT_EPOCH, op.current, self.force_sync, self.fs)

    def close(self) -> None:
        self.writer.close()
