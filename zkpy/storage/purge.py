"""Autopurge: keep the newest N snapshots and the logs needed to replay over them.

Mirrors ZooKeeper's PurgeTxnLog: every snapshot but the newest ``retain`` is
deleted, and so is every log file whose transactions all precede the oldest
snapshot kept (the log that straddles it stays).
"""

from __future__ import annotations

import logging

from zkpy.storage.formats import files_by_zxid
from zkpy.storage.fs import LOCAL, FileSystem

log = logging.getLogger("zkpy.storage")


def purge(snap_dir: str, log_dir: str, retain: int = 3, fs: FileSystem = LOCAL) -> list[str]:
    """Delete what is no longer needed; returns the deleted paths. (A removal a
    power cut undoes brings back a file that is no longer needed: no sync.)"""
    retain = max(retain, 3)
    snaps = files_by_zxid(snap_dir, "snapshot", fs)
    if len(snaps) <= retain:
        return []
    keep_from = snaps[-retain][0]
    doomed = [p for z, p in snaps[:-retain]]
    logs = files_by_zxid(log_dir, "log", fs)
    # The newest log starting at or before keep_from holds txns the kept snapshot needs.
    straddler = max((z for z, _ in logs if z <= keep_from), default=None)
    doomed += [p for z, p in logs if straddler is not None and z < straddler]
    for path in doomed:
        try:
            fs.remove(path)
            log.info("Purged %s", path)
        except OSError as e:
            log.warning("Could not purge %s: %s", path, e)
    return doomed
