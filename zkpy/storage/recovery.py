"""Start-up recovery: the newest valid snapshot plus the log replayed over it.

ZooKeeper's rule (FileTxnSnapLog.restore): load the newest snapshot whose
checksum holds (older ones are tried when the newest is damaged), then apply
every logged transaction with a zxid above the snapshot's, from the last log
file that starts at or before that zxid onwards. Applying is idempotent, so
the overlap with a fuzzy snapshot is harmless. Sessions are rebuilt the same
way: from the snapshot's session list, then createSession/closeSession txns.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from zkpy.jute.protocol import Op
from zkpy.storage.formats import VERSION_DIR, decode_entry, files_by_zxid
from zkpy.storage.snapshot import SnapshotInvalid, load_snapshot
from zkpy.storage.txnlog import LogDamaged, read_log, zero_tail
from zkpy.tree.datatree import DataTree

log = logging.getLogger("zkpy.storage")


class RecoveryError(Exception):
    """The data directory cannot be loaded safely; the message says why."""


@dataclass
class Recovered:
    tree: DataTree
    sessions: dict[int, int] = field(default_factory=dict)
    snapshot: str | None = None
    replayed: int = 0
    last_zxid: int = 0


def data_dirs(data_dir: str, data_log_dir: str | None = None) -> tuple[str, str]:
    """(snapshot directory, log directory): ``<dir>/version-2`` as ZooKeeper lays them out."""
    return (os.path.join(data_dir, VERSION_DIR),
            os.path.join(data_log_dir or data_dir, VERSION_DIR))


def recover(snap_dir: str, log_dir: str) -> Recovered:
    state = _load_newest_snapshot(snap_dir)
    snap_zxid = state.last_zxid
    logs = files_by_zxid(log_dir, "log")
    if state.snapshot is None and logs and logs[0][0] > 1:
        raise RecoveryError(
            f"no valid snapshot in {snap_dir}, and the oldest log in {log_dir} starts at "
            f"zxid 0x{logs[0][0]:x}: the transactions before it are missing")
    start = 0
    for i, (zxid, _) in enumerate(logs):
        if zxid <= snap_zxid + 1:
            start = i
    tree = state.tree
    sessions = state.sessions
    chosen = logs[start:]
    prev = snap_zxid
    for i, (_, path) in enumerate(chosen):
        is_last = i == len(chosen) - 1

        def torn(offset: int, path: str = path) -> None:
            zero_tail(path, offset)

        try:
            for entry in read_log(path, is_last, torn):
                if entry.zxid <= snap_zxid:
                    continue
                if prev and entry.zxid > prev + 1 and entry.zxid >> 32 == prev >> 32:
                    # Within an epoch zxids follow one another: a hole is lost txns
                    # (a log file deleted or never written), not something to skip.
                    raise RecoveryError(
                        f"{os.path.basename(path)}: transactions 0x{prev + 1:x} to "
                        f"0x{entry.zxid - 1:x} are missing before it (a log file in "
                        f"{log_dir} is missing?); refusing to start")
                prev = entry.zxid
                hdr, txn, digest = decode_entry(entry.data)
                tree.apply(hdr, txn, digest)
                if hdr.type == Op.createSession:
                    sessions[hdr.clientId] = txn.timeOut
                elif hdr.type == Op.closeSession:
                    sessions.pop(hdr.clientId, None)
                state.replayed += 1
        except LogDamaged as e:
            raise RecoveryError(str(e)) from None
    state.last_zxid = tree.last_zxid
    tree.digests.replayed(state.last_zxid)
    if state.replayed or state.snapshot:
        log.info("Recovered zxid 0x%x: snapshot %s, %d transactions replayed, %d sessions",
                 state.last_zxid, os.path.basename(state.snapshot or "(none)"), state.replayed,
                 len(sessions))
    return state


def _load_newest_snapshot(snap_dir: str) -> Recovered:
    snaps = files_by_zxid(snap_dir, "snapshot")
    for zxid, path in reversed(snaps):
        try:
            tree, sessions, _ = load_snapshot(path)
        except SnapshotInvalid as e:
            log.warning("Snapshot %s is invalid (%s); trying an older one", path, e)
            continue
        except OSError as e:
            log.warning("Cannot read snapshot %s (%s); trying an older one", path, e)
            continue
        tree.last_zxid = zxid
        return Recovered(tree, dict(sessions), path, 0, zxid)
    if snaps:
        log.warning("No valid snapshot among %d in %s; starting from an empty tree and "
                    "the logs", len(snaps), snap_dir)
    return Recovered(DataTree())
