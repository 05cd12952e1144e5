"""Start-up: what a data directory holds, read once, the same way for every server.

ZooKeeper's rule (FileTxnSnapLog.restore): load the newest snapshot whose
checksum holds (older ones are tried when the newest is damaged), then take
every logged transaction with a zxid above the snapshot's, from the last log
file that starts at or before that zxid onwards. A torn tail of the newest log
is cut off (zeroed, synced; a newest log without a whole header is removed);
damage anywhere else, or a hole in the zxids of an epoch (a lost log file),
refuses to start.

``load`` returns that as a ``StartState``: the snapshot's tree and sessions,
the logged transactions after it *unapplied*, and the epoch files. Zab decides
what the log means: a standalone server (an ensemble of one) commits all of it
at once; an ensemble member holds it as accepted history until a leader says
what is committed (``zkpy.zab.peer``). ``recover`` is ``load`` with the whole
log applied, for tools and tests that want the state a standalone server
would serve.

Blocking file I/O, meant for start-up; no reactor.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from zkpy.jute.codec import JuteError
from zkpy.jute.protocol import Op
from zkpy.storage.formats import VERSION_DIR, decode_entry, files_by_zxid
from zkpy.storage.fs import LOCAL, FileSystem
from zkpy.storage.snapshot import SnapshotInvalid, load_snapshot
from zkpy.storage.txnlog import LogDamaged, read_log, zero_tail
from zkpy.storage.zabdisk import ACCEPTED_EPOCH, CURRENT_EPOCH
from zkpy.tree.datatree import DataTree
from zkpy.zab.messages import MAX_EPOCH

log = logging.getLogger("zkpy.storage")


class RecoveryError(Exception):
    """The data directory cannot be loaded safely; the message says why."""


@dataclass
class StartState:
    tree: DataTree  # the snapshot's, nothing logged applied
    sessions: dict[int, int]  # session id -> timeout, the snapshot's
    snapshot_zxid: int = 0
    snapshot: str | None = None  # its path (None: no valid snapshot)
    log: list[tuple[int, bytes]] = field(default_factory=list)  # (zxid, txn) after it
    accepted_epoch: int = 0
    current_epoch: int = 0
    # Seconds spent loading the snapshot and reading the log after it (the metrics'
    # startup_snap_load_time and startup_txns_load_time).
    load_seconds: tuple[float, float] = (0.0, 0.0)

    @property
    def last_zxid(self) -> int:
        return self.log[-1][0] if self.log else self.snapshot_zxid


@dataclass
class Recovered:
    """A data directory with its whole log applied (``recover``)."""

    tree: DataTree
    sessions: dict[int, int]
    snapshot: str | None
    replayed: int
    last_zxid: int


def data_dirs(data_dir: str, data_log_dir: str | None = None) -> tuple[str, str]:
    """(snapshot directory, log directory): ``<dir>/version-2`` as ZooKeeper lays them out."""
    return (os.path.join(data_dir, VERSION_DIR),
            os.path.join(data_log_dir or data_dir, VERSION_DIR))


def load(snap_dir: str, log_dir: str, fs: FileSystem = LOCAL) -> StartState:
    started = time.monotonic()
    state = _load_newest_snapshot(snap_dir, fs)
    snap_loaded = time.monotonic()
    read: list[str] = []
    state.log = logged_after(log_dir, state.snapshot_zxid, fs, read)
    state.load_seconds = (snap_loaded - started, time.monotonic() - snap_loaded)
    if state.snapshot is None and state.log and state.log[0][0] & 0xFFFFFFFF > 1:
        raise RecoveryError(
            f"no valid snapshot in {snap_dir}, and the oldest logged transaction is "
            f"0x{state.log[0][0]:x}: the transactions before it are missing")
    last = state.last_zxid
    accepted = read_epoch(snap_dir, ACCEPTED_EPOCH, fs)
    current = read_epoch(snap_dir, CURRENT_EPOCH, fs)
    if current is None:
        # QuorumPeer.loadDataBase: no currentEpoch file yet (a standalone data
        # directory, or a first start): the epoch of the last zxid.
        current = last >> 32
    if accepted is None:
        accepted = current
    if current > accepted:
        raise RecoveryError(f"{snap_dir}: currentEpoch {current} is above acceptedEpoch "
                            f"{accepted}; the epoch files are damaged")
    state.accepted_epoch, state.current_epoch = accepted, current
    epochs = [os.path.join(snap_dir, n) for n in (ACCEPTED_EPOCH, CURRENT_EPOCH)]
    loaded = [state.snapshot] if state.snapshot else []
    _make_durable(fs, loaded + read + [p for p in epochs if fs.exists(p)], {snap_dir, log_dir})
    return state


def _make_durable(fs: FileSystem, files: list[str], dirs: set[str]) -> None:
    """Sync what was loaded: the snapshot, the logs read, the epoch files, their
    directories. A process killed between a write and its sync leaves the write
    in the page cache, where the next start reads it; a server that went on to
    build on it (a standalone server committing it, a member reporting it as its
    history, new log files after it) would lose it, and leave a hole, at the
    next power cut. Nothing is built on what was read before this returns."""
    for path in files:
        fs.sync_file(path)
    for directory in sorted(dirs):
        if fs.isdir(directory):
            fs.sync_dir(directory)


def read_epoch(snap_dir: str, name: str, fs: FileSystem = LOCAL) -> int | None:
    """A decimal epoch (QuorumPeer.readLongFromFile); RecoveryError if it is not
    one a zxid can carry (up to ``MAX_EPOCH``: a leader's next must fit too)."""
    path = os.path.join(snap_dir, name)
    try:
        raw = fs.read(path)
    except FileNotFoundError:
        return None
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit() or not text.isascii() or int(text) > MAX_EPOCH:
        raise RecoveryError(f"{path}: {text[:40]!r} is not an epoch number")
    return int(text)


def logged_after(log_dir: str, zxid: int, fs: FileSystem = LOCAL,
                 read: list[str] | None = None) -> list[tuple[int, bytes]]:
    """Every logged (zxid, txn) after ``zxid``, in order; a torn tail is cut off.
    ``read``: gets the paths of the log files read (and kept)."""
    logs = files_by_zxid(log_dir, "log", fs)
    start = 0
    for i, (first, _) in enumerate(logs):
        if first <= zxid + 1:
            start = i
    out: list[tuple[int, bytes]] = []
    chosen = logs[start:]
    prev = zxid
    for i, (_, path) in enumerate(chosen):
        def torn(offset: int, path: str = path) -> None:
            if offset:
                zero_tail(path, offset, fs)
            else:
                # Not even a whole header (ZOOKEEPER-2332): remove the file, durably,
                # before a newer log can make it a damaged file in the middle.
                fs.remove(path)
                fs.sync_dir(log_dir)

        try:
            for entry in read_log(path, i == len(chosen) - 1, torn, fs):
                if entry.zxid <= prev:
                    continue
                if prev and entry.zxid > prev + 1 and entry.zxid >> 32 == prev >> 32:
                    # Within an epoch zxids follow one another: a hole is lost txns
                    # (a log file deleted or never written), not something to skip.
                    raise RecoveryError(
                        f"{os.path.basename(path)}: transactions 0x{prev + 1:x} to "
                        f"0x{entry.zxid - 1:x} are missing before it (a log file in "
                        f"{log_dir} is missing?); refusing to start")
                if entry.zxid >> 32 > MAX_EPOCH:
                    # Its epoch would become our currentEpoch, and the next
                    # leader's epoch (one more) no zxid can carry.
                    raise RecoveryError(
                        f"{os.path.basename(path)}: transaction 0x{entry.zxid:x} has an "
                        f"epoch past {MAX_EPOCH}; refusing to start")
                _check_decodes(path, entry.zxid, entry.data)
                out.append((entry.zxid, entry.data))
                prev = entry.zxid
        except LogDamaged as e:
            raise RecoveryError(str(e)) from None
        if read is not None and fs.exists(path):
            read.append(path)
    return out


def _check_decodes(path: str, zxid: int, data: bytes) -> None:
    """A logged txn whose checksum holds but which does not decode is damage too
    (ZooKeeper's FileTxnIterator fails on it): refuse it here, not halfway
    through replaying it, or on a follower a leader sent it to."""
    try:
        decode_entry(data)
    except JuteError as e:
        raise RecoveryError(f"{os.path.basename(path)}: transaction 0x{zxid:x} does not "
                            f"decode ({e}); refusing to start") from None


def recover(snap_dir: str, log_dir: str, fs: FileSystem = LOCAL) -> Recovered:
    """The state a standalone server serves after start-up: ``load`` with every
    logged transaction applied (sessions follow createSession/closeSession)."""
    state = load(snap_dir, log_dir, fs)
    tree, sessions = state.tree, state.sessions
    for _zxid, data in state.log:
        hdr, txn, digest = decode_entry(data)
        tree.apply(hdr, txn, digest)
        if hdr.type == Op.createSession:
            sessions[hdr.clientId] = txn.timeOut
        elif hdr.type == Op.closeSession:
            sessions.pop(hdr.clientId, None)
    if state.log:
        tree.last_zxid = max(tree.last_zxid, state.log[-1][0])
    tree.digests.replayed(tree.last_zxid)
    if state.log or state.snapshot:
        log.info("Recovered zxid 0x%x: snapshot %s, %d transactions replayed, %d sessions",
                 tree.last_zxid, os.path.basename(state.snapshot or "(none)"), len(state.log),
                 len(sessions))
    return Recovered(tree, sessions, state.snapshot, len(state.log), tree.last_zxid)


def _load_newest_snapshot(snap_dir: str, fs: FileSystem) -> StartState:
    snaps = files_by_zxid(snap_dir, "snapshot", fs)
    for zxid, path in reversed(snaps):
        try:
            tree, sessions, _ = load_snapshot(path, fs)
        except SnapshotInvalid as e:
            log.warning("Snapshot %s is invalid (%s); trying an older one", path, e)
            continue
        except OSError as e:
            log.warning("Cannot read snapshot %s (%s); trying an older one", path, e)
            continue
        tree.last_zxid = zxid
        return StartState(tree, dict(sessions), zxid, path)
    if snaps:
        log.warning("No valid snapshot among %d in %s; starting from an empty tree and "
                    "the logs", len(snaps), snap_dir)
    return StartState(DataTree(), {})
