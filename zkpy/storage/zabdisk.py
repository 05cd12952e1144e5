"""What a quorum member keeps on disk beyond a standalone server's log and snapshots.

- The epoch files ``acceptedEpoch`` and ``currentEpoch`` in the snapshot
  directory (QuorumPeer: a decimal long, replaced atomically), Zab's durable
  promises.
- Start-up state for ``zkpy.zab``: the tree comes from the newest valid
  snapshot *only*; the logged transactions after it are returned unapplied,
  because a member cannot know which of them were committed until a leader
  says so (a standalone server replays them all: ``recovery.recover``).
- ``truncate_log``: the leader's TRUNC, dropping an old epoch's uncommitted tail.
- ``install_snapshot``: the leader's SNAP, stored as an ordinary snapshot file.

Blocking file I/O, meant for the disk thread (and start-up); no reactor.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from zkpy.storage.formats import files_by_zxid, snapshot_name
from zkpy.storage.recovery import RecoveryError, _load_newest_snapshot
from zkpy.storage.snapshot import SnapshotInvalid, parse_snapshot
from zkpy.storage.txnlog import LogDamaged, LogWriter, read_log, zero_tail
from zkpy.tree.datatree import DataTree

log = logging.getLogger("zkpy.storage")

ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"


@dataclass
class QuorumState:
    tree: DataTree
    sessions: dict[int, int]
    snapshot_zxid: int
    log: list[tuple[int, bytes]] = field(default_factory=list)
    accepted_epoch: int = 0
    current_epoch: int = 0


def read_epoch(snap_dir: str, name: str) -> int | None:
    path = os.path.join(snap_dir, name)
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        raise RecoveryError(f"{path}: {text!r} is not an epoch number") from None


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


def logged_after(log_dir: str, zxid: int) -> list[tuple[int, bytes]]:
    """Every logged (zxid, txn) after ``zxid``, in order; a torn tail is dropped."""
    logs = files_by_zxid(log_dir, "log")
    start = 0
    for i, (first, _) in enumerate(logs):
        if first <= zxid + 1:
            start = i
    out: list[tuple[int, bytes]] = []
    chosen = logs[start:]
    for i, (_, path) in enumerate(chosen):
        def torn(offset: int, path: str = path) -> None:
            zero_tail(path, offset)

        try:
            for entry in read_log(path, i == len(chosen) - 1, torn):
                if entry.zxid > zxid and (not out or entry.zxid > out[-1][0]):
                    out.append((entry.zxid, entry.data))
        except LogDamaged as e:
            raise RecoveryError(str(e)) from None
    return out


def load_quorum_state(snap_dir: str, log_dir: str) -> QuorumState:
    snap = _load_newest_snapshot(snap_dir)
    entries = logged_after(log_dir, snap.last_zxid)
    if snap.snapshot is None and entries and entries[0][0] > 1 and entries[0][0] & 0xFFFFFFFF > 1:
        raise RecoveryError(
            f"no valid snapshot in {snap_dir}, and the oldest logged transaction is "
            f"0x{entries[0][0]:x}: the transactions before it are missing")
    last = entries[-1][0] if entries else snap.last_zxid
    accepted = read_epoch(snap_dir, ACCEPTED_EPOCH)
    current = read_epoch(snap_dir, CURRENT_EPOCH)
    if current is None:
        # QuorumPeer.loadDataBase: no currentEpoch file yet (a standalone data
        # directory, or a first start): the epoch of the last zxid.
        current = last >> 32
        log.info("%s not found in %s; using the epoch of the last zxid, %d", CURRENT_EPOCH,
                 snap_dir, current)
    if accepted is None:
        accepted = current
    if current > accepted:
        raise RecoveryError(f"{snap_dir}: currentEpoch {current} is above acceptedEpoch "
                            f"{accepted}; the epoch files are damaged")
    return QuorumState(snap.tree, snap.sessions, snap.last_zxid, entries, accepted, current)


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
    parse_snapshot(data, zxid)  # SnapshotInvalid: never keep a snapshot we cannot load
    path = os.path.join(snap_dir, snapshot_name(zxid))
    _write_atomically(path, data, fsync)
    return path


__all__ = ["QuorumState", "load_quorum_state", "read_epoch", "write_epoch", "truncate_log",
           "install_snapshot", "logged_after", "SnapshotInvalid", "ACCEPTED_EPOCH",
           "CURRENT_EPOCH"]
