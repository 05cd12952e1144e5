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
from zkpy.storage.snapshot import parse_snapshot
from zkpy.storage.txnlog import LogWriter, read_log

log = logging.getLogger("zkpy.storage")

ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"


def write_epoch(snap_dir: str, name: str, value: int, fsync: bool = True) -> None:
    _write_atomically(os.path.join(snap_dir, name), f"{value}\n".encode(), fsync)


def _write_atomically(path: str, data: bytes, fsync: bool) -> None:
    """Through a temporary name, so a crash leaves the old file or the new one."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        _sync_dir(os.path.dirname(path))


def _sync_dir(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def truncate_log(log_dir: str, zxid: int, fsync: bool = True) -> int:
    """Drop every logged txn after ``zxid`` (FileTxnLog.truncate); returns how
    many were dropped. The writer must have been rolled (no file open)."""
    dropped = 0
    for first, path in reversed(files_by_zxid(log_dir, "log")):
        if first > zxid:
            dropped += sum(1 for _ in read_log(path, True))
            os.remove(path)
            continue
        kept = []
        for entry in read_log(path, True):
            if entry.zxid <= zxid:
                kept.append((entry.zxid, entry.data))
            else:
                dropped += 1
        if dropped:
            tmp_dir = path + ".trunc"
            os.makedirs(tmp_dir, exist_ok=True)
            writer = LogWriter(tmp_dir, 4096, fsync)
            if kept:
                writer.append_many(kept)
            writer.close()
            if kept:
                assert writer.path is not None
                os.replace(writer.path, path)
            else:
                os.remove(path)
            os.rmdir(tmp_dir)
        break
    if fsync:
        _sync_dir(log_dir)
    return dropped


def install_snapshot(snap_dir: str, zxid: int, data: bytes, fsync: bool = True) -> str:
    """Store a leader's SNAP as ``snapshot.<zxid>`` (checked before it is kept)."""
    parse_snapshot(data, zxid, trailer=False)  # SnapshotInvalid: never keep one we cannot load
    path = os.path.join(snap_dir, snapshot_name(zxid))
    _write_atomically(path, data, fsync)
    return path
