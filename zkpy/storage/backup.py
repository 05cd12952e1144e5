"""Online backup and restore: consistent snapshots, the AdminServer's rules for
ZooKeeper 3.9's ``snapshot`` and ``restore`` commands, and the offline forms.

Contract
--------
* A *consistent* snapshot is the tree and session list exactly as they were
  after one transaction, ``last_zxid``, was applied: what a server restarted
  at that point would serve.  A running server gets one from its fuzzy
  snapshot machinery (``zkpy.storage.snapshot.SnapshotMaker``, which walks the
  live tree between requests while it changes, starting at zxid Z0) plus the
  transactions logged in (Z0, Z1], Z1 being the last one applied when the walk
  ended: replaying them over the fuzzy tree (idempotent, as recovery does)
  gives the state at Z1 (``consistent_snapshot``).  The bytes are Apache
  ZooKeeper 3.8's ``snapshot.<Z1>`` file layout, so the file drops into a 3.8
  data directory as it is.
* ZooKeeper 3.9 (ZOOKEEPER-4570/4571, read from its Commands.java): both
  commands need ALL on ``/`` for the ids of the ``Authorization: <scheme>
  <auth>`` header (401 "Auth info is missing for the command" without one, 401
  "Not authenticated" when the scheme refuses it, 403 "Not authorized"); each
  has a RateLimiter of one call per ``zookeeper.admin.rateLimiterIntervalInMS``
  (300000) — restore in milliseconds, snapshot in *micro*seconds (3.9.0-3.9.5
  pass TimeUnit.MICROSECONDS there, so the snapshot window is 300 ms) — and
  answers 429 past it; ``zookeeper.admin.snapshot.enabled`` /
  ``zookeeper.admin.restore.enabled`` (true) off answer 503.
* Pure apart from reading a data directory's files (``logged_between``,
  ``backup_from_data_dir``) and writing one (``install_backup``); never
  repairs a log it reads (a live server's log may end in a half-written entry).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.protocol import Err, Op, ZkError
from zkpy.storage.formats import VERSION_DIR, decode_entry, files_by_zxid, snapshot_name
from zkpy.storage.fs import LOCAL, write_atomically
from zkpy.storage.snapshot import SnapshotInvalid, load_snapshot, parse_snapshot, snapshot_bytes
from zkpy.storage.txnlog import LogDamaged, read_log
from zkpy.tree.datatree import DataTree

PERMS_ALL = 31
DEFAULT_RATE_INTERVAL_MS = 300000


class BackupError(Exception):
    """A snapshot or restore that cannot be done; the message says why."""


class RateLimiter:
    """ZooKeeper's RateLimiter: ``rate`` calls per window; the window restarts
    on the first call after it ended (it starts when the server does)."""

    def __init__(self, rate: int, interval_ms: float, now_ms: float) -> None:
        self.rate = rate
        self.interval_ms = interval_ms
        self.reset_at = now_ms
        self.remaining = rate

    def allow(self, now_ms: float) -> bool:
        if now_ms > self.reset_at + self.interval_ms:
            self.remaining = self.rate
            self.reset_at = now_ms
        if self.remaining > 0:
            self.remaining -= 1
            return True
        return False


def admin_ids(header: str | None, remote_ip: str, providers: Any) -> tuple[int, str] | list[Any]:
    """The ids an ``Authorization`` header proves, or (HTTP status, error)."""
    if header is None:
        return 401, "Auth info is missing for the command"
    parts = header.split(" ")
    if len(parts) not in (1, 2) or parts[0] not in providers.schemes:
        return 401, "Not authenticated"
    auth = parts[1].encode("utf-8") if len(parts) == 2 else None
    if parts[0] == "digest" and auth is None:
        return 401, "Not authenticated"
    try:
        ids = providers.authenticate(parts[0], auth, remote_ip)
    except ZkError:
        return 401, "Not authenticated"
    return ids if ids else (401, "Not authenticated")


def authorize(header: str | None, remote_ip: str, providers: Any, root_acl: Sequence[Any],
              skip_acl: bool = False) -> tuple[int, str] | None:
    """None when the header's ids hold ALL on ``/`` (each bit checked on its own,
    as Commands.handleAuthorization does), else (HTTP status, error)."""
    ids = admin_ids(header, remote_ip, providers)
    if isinstance(ids, tuple):
        return ids
    if skip_acl:
        return None
    for bit in range(5):
        try:
            providers.check(root_acl, 1 << bit, ids)
        except ZkError as e:
            if e.code == Err.NOAUTH:
                return 403, "Not authorized"
            raise
    return None


def replay(tree: DataTree, sessions: dict[int, int], entries: Iterable[tuple[int, bytes]]
           ) -> int:
    """Apply logged transactions over a (fuzzy) tree, as recovery does; the last zxid."""
    last = tree.last_zxid
    for zxid, data in entries:
        hdr, txn, digest = decode_entry(data)
        tree.apply(hdr, txn, digest)
        if hdr.type == Op.createSession:
            sessions[hdr.clientId] = txn.timeOut
        elif hdr.type == Op.closeSession:
            sessions.pop(hdr.clientId, None)
        last = max(last, zxid)
    tree.last_zxid = last
    return last


def logged_between(log_dir: str, start: int, end: int | None = None) -> list[tuple[int, bytes]]:
    """Logged (zxid, txn) with start < zxid <= end (no end: all), read-only."""
    logs = files_by_zxid(log_dir, "log")
    first = 0
    for i, (zxid, _) in enumerate(logs):
        if zxid <= start + 1:
            first = i
    out: list[tuple[int, bytes]] = []
    chosen = logs[first:]
    for i, (_, path) in enumerate(chosen):
        try:
            for entry in read_log(path, i == len(chosen) - 1):
                if end is not None and entry.zxid > end:
                    return out
                if entry.zxid > start and (not out or entry.zxid > out[-1][0]):
                    out.append((entry.zxid, entry.data))
        except LogDamaged as e:
            raise BackupError(str(e)) from None
    return out


def consistent_snapshot(fuzzy: bytes, start: int, entries: Sequence[tuple[int, bytes]],
                        end: int) -> bytes:
    """The state at ``end``: a fuzzy snapshot begun at ``start`` with the
    transactions (start, end] replayed over it, as snapshot-file bytes."""
    tree, sessions = parse_snapshot(fuzzy, start)
    last = replay(tree, sessions, (e for e in entries if start < e[0] <= end))
    if last != end:
        raise BackupError(f"the log holds transactions up to 0x{last:x} only, the "
                          f"snapshot needs them up to 0x{end:x}")
    return snapshot_bytes(tree, sessions)


def read_backup(blob: bytes) -> tuple[DataTree, dict[int, int]]:
    """A snapshot stream (zkpy's, ZooKeeper 3.8's file, or 3.9's stream whose
    digest and lastProcessedZxid trailers are ignored) as (tree, sessions)."""
    try:
        return parse_snapshot(blob, 0)
    except (SnapshotInvalid, ValueError) as e:
        raise BackupError(f"not a ZooKeeper snapshot: {e}") from None


def zxid_from_name(path: str) -> int | None:
    match = re.fullmatch(r"snapshot\.([0-9a-fA-F]+)", os.path.basename(path))
    return int(match[1], 16) if match else None


def backup_from_data_dir(data_dir: str, data_log_dir: str | None = None) -> tuple[bytes, int]:
    """A consistent snapshot of a *stopped* server's data directory (zkpy's or
    Apache ZooKeeper's): its newest valid snapshot with every logged
    transaction after it replayed.  (bytes, last zxid); nothing is changed."""
    snap_dir = os.path.join(data_dir, VERSION_DIR)
    log_dir = os.path.join(data_log_dir or data_dir, VERSION_DIR)
    tree, sessions, zxid = DataTree(), dict[int, int](), 0
    for candidate, path in reversed(files_by_zxid(snap_dir, "snapshot")):
        try:
            tree, sessions, _ = load_snapshot(path)
        except (SnapshotInvalid, OSError):
            continue
        zxid = candidate
        break
    else:
        if files_by_zxid(snap_dir, "snapshot"):
            raise BackupError(f"{snap_dir}: no valid snapshot")
    tree.last_zxid = zxid
    last = replay(tree, sessions, logged_between(log_dir, zxid))
    return snapshot_bytes(tree, sessions), last


def install_backup(data_dir: str, blob: bytes, zxid: int) -> str:
    """Put a snapshot into a fresh data directory as ``version-2/snapshot.<zxid>``,
    where zkpy and Apache ZooKeeper 3.8 both start from it; the file's path."""
    read_backup(blob)  # refuse what would not load
    snap_dir = os.path.join(data_dir, VERSION_DIR)
    existing = files_by_zxid(snap_dir, "snapshot") + files_by_zxid(snap_dir, "log")
    if existing:
        raise BackupError(f"{snap_dir} already holds {os.path.basename(existing[0][1])}: "
                          "restore into a fresh data directory (or use the running "
                          "server's AdminServer restore)")
    LOCAL.makedirs(snap_dir)
    path = os.path.join(snap_dir, snapshot_name(zxid))
    write_file(path, blob)
    return path


def write_file(path: str, blob: bytes) -> None:
    """Write through a temporary name and fsync: never half a snapshot under its name."""
    write_atomically(LOCAL, path, [blob])


def acl_of_root(tree: DataTree) -> list[Any]:
    node = tree.get("/")
    return list(node.acl) if node is not None else [S.ACL(PERMS_ALL, S.Id("world", "anyone"))]
