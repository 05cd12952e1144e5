"""Quota enforcement before a write: ZooKeeperServer.checkQuota, on the future state.

Only with ``zookeeper.enforceQuota=true``: a create or setData that takes a
quota (``zkpy.tree.quota``) over a limit logs ZooKeeper's rate-limited
"Quota exceeded: ..." warning, and over a hard limit fails with
QUOTAEXCEEDED. ZooKeeper checks against the committed tree; zkpy checks
against the future state (the committed usage plus what the transactions
still in flight will change, as ``Prep`` knows it), so pipelined writes or
the ops of one multi cannot together slip past a hard limit.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zkpy.jute.protocol import Err, ZkError
from zkpy.tree.quota import (
    LIMIT_NODE,
    QUOTA_ZOOKEEPER,
    QuotaIndex,
    StatsTrack,
    deepest_root,
    limit_path,
    stat_path,
)

if TYPE_CHECKING:
    from zkpy.server.prep import Prep

log = logging.getLogger("zkpy.server")


class RateLogger:
    """ZooKeeper's RateLogger: the first of a run of identical messages is
    logged at once, repeats within ``interval`` ms are counted and summed up."""

    def __init__(self, logger: logging.Logger, interval_ms: int = 100) -> None:
        self.log = logger
        self.interval = interval_ms
        self.msg: str | None = None
        self.count = 0
        self.stamp = 0

    def flush(self) -> None:
        if self.msg is not None and self.count > 0:
            times = f"[{self.count} times] " if self.count > 1 else ""
            self.log.warning("%sMessage: %s", times, self.msg)
        self.msg = None
        self.count = 0

    def rate_limit_log(self, msg: str, now: int) -> None:
        if msg == self.msg:
            self.count += 1
            if now - self.stamp >= self.interval:
                self.flush()
                self.msg = msg
                self.stamp = now
        else:
            self.flush()
            self.msg = msg
            self.stamp = now
            self.log.warning("Message:%s Value:null", msg)


class QuotaGuard:
    """Prep's quota check for creates and setData (off unless enforced)."""

    def __init__(self) -> None:
        self.enforce = False
        self.rate_log = RateLogger(logging.getLogger("zkpy.server"))

    def enable(self, enforce: bool) -> None:
        self.enforce = enforce
        if enforce:
            log.info("zookeeper.enforceQuota = true, Quota Enforce enables")

    def check(self, prep: Prep, path: str, last_data: bytes | None, data: bytes | None,
              create: bool, now: int) -> None:
        if not self.enforce:
            return
        prefix = _future_prefix(prep, path)
        if prefix is None:
            return
        size = len(data) if data else 0
        if create:
            count_diff, bytes_diff = 1, size
        else:
            count_diff, bytes_diff = 0, size - (len(last_data) if last_data else 0)
        lpath = limit_path(prefix)
        limits_data = _future_data(prep, lpath)
        if limits_data is None:
            log.error("Missing limit node for quota %s", lpath)
            return
        try:
            limits = StatsTrack.parse(limits_data[0])
        except ValueError as e:
            log.error("Failed to parse the quota limits %s: %s", lpath, e)
            raise ZkError(Err.MARSHALLINGERROR, path) from None
        check_count = count_diff != 0 and (limits.count > -1 or limits.count_hard_limit > -1)
        check_bytes = bytes_diff != 0 and (limits.size > -1 or limits.byte_hard_limit > -1)
        if not check_count and not check_bytes:
            return
        spath = stat_path(prefix)
        stat_node = prep.tree.get(spath)
        if stat_node is None:
            log.error("Missing node for stat %s", spath)
            return
        try:
            current = StatsTrack.parse(stat_node.data)
        except ValueError as e:
            log.error("Failed to parse the quota stats %s: %s", spath, e)
            raise ZkError(Err.MARSHALLINGERROR, path) from None
        pending_count, pending_bytes = _in_flight_usage(prep, prefix)
        if check_count:
            new_count = current.count + pending_count + count_diff
            hard = limits.count_hard_limit > -1
            limit = limits.count_hard_limit if hard else limits.count
            if new_count > limit:
                self.rate_log.rate_limit_log(
                    f"Quota exceeded: {prefix} [current count={new_count}, "
                    f"{'hard' if hard else 'soft'}CountLimit={limit}]", now)
                if hard:
                    raise ZkError(Err.QUOTAEXCEEDED, prefix)
        if check_bytes:
            new_bytes = current.size + pending_bytes + bytes_diff
            hard = limits.byte_hard_limit > -1
            limit = limits.byte_hard_limit if hard else limits.size
            if new_bytes > limit:
                self.rate_log.rate_limit_log(
                    f"Quota exceeded: {prefix} [current bytes={new_bytes}, "
                    f"{'hard' if hard else 'soft'}ByteLimit={limit}]", now)
                if hard:
                    raise ZkError(Err.QUOTAEXCEEDED, prefix)


def _future_data(prep: Prep, path: str) -> tuple[bytes | None] | None:
    """(data,) of ``path`` in the future state, or None when it will not exist."""
    change = prep.future(path)
    if change is not None:
        return (change.data,) if change.exists else None
    node = prep.tree.get(path)
    return None if node is None else (node.data,)


def _future_roots(prep: Prep) -> set[str] | frozenset[str]:
    """The quota roots once every in-flight transaction has been applied."""
    roots: set[str] | frozenset[str] = prep.tree.quota.roots
    end = "/" + LIMIT_NODE
    copied = False
    for path, change in prep.in_flight():
        if not path.endswith(end) or not path.startswith(QUOTA_ZOOKEEPER):
            continue
        parent = path[:-len(end)]
        if not parent.startswith(QUOTA_ZOOKEEPER):
            continue
        if not copied:
            roots, copied = set(roots), True
        index = QuotaIndex()
        index.add(parent[len(QUOTA_ZOOKEEPER):])
        assert isinstance(roots, set)
        if change.exists:
            roots |= index.roots
        else:
            roots -= index.roots
    return roots


def _future_prefix(prep: Prep, path: str) -> str | None:
    roots = _future_roots(prep)
    return deepest_root(roots, path) if roots else None


def _in_flight_usage(prep: Prep, prefix: str) -> tuple[int, int]:
    """(count, bytes) that the in-flight transactions will add to ``prefix``'s stats."""
    if not prep.outstanding():
        return 0, 0
    roots = _future_roots(prep)
    dcount = dbytes = 0
    for path, change in prep.in_flight():
        if deepest_root(roots, path) != prefix:
            continue
        node = prep.tree.get(path)
        if node is not None:
            dcount -= 1
            dbytes -= node.dataLength
        if change.exists:
            dcount += 1
            dbytes += len(change.data) if change.data else 0
    return dcount, dbytes
