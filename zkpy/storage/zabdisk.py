"""What Zab writes to disk beyond appending to the log (read back by ``recovery``).

- The epoch files ``acceptedEpoch`` and ``currentEpoch`` in the snapshot
  directory (QuorumPeer: a decimal long, replaced atomically), Zab's durable
  promises. A standalone server writes none, as ZooKeeper's does not.
- ``truncate_log``: the leader's TRUNC, dropping an old epoch's uncommitted tail.
- ``install_snapshot``: the leader's SNAP, stored as an ordinary snapshot file.

Blocking file I/O, meant for the disk thread (and start-up); no reactor.
"""

from __future__ import annotations

import logging
import os

from zkpy.storage.formats import files_by_zxid, snapshot_name
from zkpy.storage.fs import LOCAL, FileSystem, write_atomically
from zkpy.storage.snapbuild import BuiltSnapshot
from zkpy.storage.snapshot import verify_snapshot
from zkpy.storage.txnlog import read_log

log = logging.getLogger("zkpy.storage")

ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"


def write_epoch(snap_dir: str, name: str, value: int, fsync: bool = True,
                fs: FileSystem = LOCAL) -> None:
    """Replace the epoch file atomically (synced, renamed, the directory synced)."""
    write_atomically(fs, os.path.join(snap_dir, name), [f"{value}\n".encode()], fsync)


def truncate_log(log_dir: str, zxid: int, fsync: bool = True, fs: FileSystem = LOCAL) -> int:
    """Drop every logged txn after ``zxid`` (FileTxnLog.truncate); returns how
    many were dropped. The writer must have been rolled (no file open).

    As ZooKeeper does it: the files that start after ``zxid`` are removed, the
    one holding it is cut just past it. Durably, and in that order: the
    removals are synced before the cut, so a power cut in between leaves the
    log as it was or a prefix of it, never a hole; and both are synced before
    this returns, so nothing logged after the TRUNC can outlive it."""
    dropped = 0
    removed = False
    for first, path in reversed(files_by_zxid(log_dir, "log", fs)):
        if first > zxid:
            dropped += sum(1 for _ in read_log(path, True, fs=fs))
            fs.remove(path)
            removed = True
            continue
        end = 0
        after = 0
        torn: list[int] = []
        for entry in read_log(path, True, torn.append, fs):
            if entry.zxid <= zxid:
                end = entry.end
            else:
                after += 1
        if removed and fsync:
            fs.sync_dir(log_dir)
            removed = False
        if after or torn or not end:
            dropped += after
            _cut(fs, path, end, fsync)
        break
    if removed and fsync:
        fs.sync_dir(log_dir)
    return dropped


def _cut(fs: FileSystem, path: str, end: int, fsync: bool) -> None:
    """Cut a log file just past its last kept entry (no entry kept: remove it)."""
    if not end:
        fs.remove(path)
        if fsync:
            fs.sync_dir(os.path.dirname(path))
        return
    f = fs.open_rw(path)
    try:
        f.truncate(end)
        if fsync:
            f.sync()
    finally:
        f.close()


def install_snapshot(snap_dir: str, zxid: int, data: bytes, fsync: bool = True,
                     fs: FileSystem = LOCAL) -> str:
    """Store a leader's SNAP as ``snapshot.<zxid>`` (checked before it is kept;
    synced, with its name, before anything after it is: ZOOKEEPER-2872)."""
    if not isinstance(data, BuiltSnapshot):  # built from these bytes: it loads
        verify_snapshot(data, zxid)  # SnapshotInvalid: never keep one we cannot load
    path = os.path.join(snap_dir, snapshot_name(zxid))
    write_atomically(fs, path, [data], fsync)
    return path
