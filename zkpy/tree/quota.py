"""Quotas, kept as Apache ZooKeeper 3.8 keeps them.

A quota on ``/p`` is two ordinary znodes that clients (zkCli's ``setquota``)
create: ``/zookeeper/quota/p/zookeeper_limits`` with the limits and
``/zookeeper/quota/p/zookeeper_stats`` with the usage, both in StatsTrack's
text format (``count=5,bytes=-1`` and, when 3.8's hard limits are set,
``count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=10``).

The tree side (``QuotaIndex`` plus the ``on_*`` hooks that ``DataTree`` calls
after each change) follows DataTree.java: creating a limits node registers its
path (the "pTrie"), creating a stats node fills it with the count and bytes of
the existing subtree (the quota root counts itself), and every later create,
delete or setData under a quota root updates the stats node of the longest
registered prefix. The stats node's data is replaced in place: its version,
mzxid and mtime do not move. Loading a snapshot recomputes everything
(``setup_quota``, ZooKeeper's setupQuota).

The prep side (``QuotaGuard``) is ZooKeeperServer.checkQuota: only with
``zookeeper.enforceQuota=true``, a create or setData that takes a quota over a
limit logs ZooKeeper's rate-limited "Quota exceeded: ..." warning, and over a
hard limit fails with QUOTAEXCEEDED. ZooKeeper checks against the committed
tree; zkpy checks against the future state (the committed usage plus what the
transactions still in flight will change), so pipelined writes or the ops of
one multi cannot together slip past a hard limit.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from zkpy.jute.protocol import Err, ZkError

if TYPE_CHECKING:
    from zkpy.server.prep import Prep
    from zkpy.tree.datatree import DataTree

log = logging.getLogger("zkpy.tree.quota")

PROC_ZOOKEEPER = "/zookeeper"
QUOTA_ZOOKEEPER = "/zookeeper/quota"
LIMIT_NODE = "zookeeper_limits"
STAT_NODE = "zookeeper_stats"

_LONG_RE = re.compile(r"[+-]?[0-9]+")
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def quota_path(path: str) -> str:
    return QUOTA_ZOOKEEPER + path


def limit_path(path: str) -> str:
    return f"{QUOTA_ZOOKEEPER}{path}/{LIMIT_NODE}"


def stat_path(path: str) -> str:
    return f"{QUOTA_ZOOKEEPER}{path}/{STAT_NODE}"


def _java_split(text: str, pattern: str) -> list[str]:
    """String.split(regex) with Java's rules: trailing empty strings dropped,
    the input itself when nothing matches."""
    if re.search(pattern, text) is None:
        return [text]
    parts = re.split(pattern, text)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _parse_long(text: str) -> int:
    if not _LONG_RE.fullmatch(text):
        raise ValueError(f"For input string: \"{text}\"")
    value = int(text)
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError(f"For input string: \"{text}\"")
    return value


class StatsTrack:
    """The key=value text of a limits or stats node (StatsTrack.java).

    Missing keys read as -1. ``count`` and ``bytes`` always print first; any
    other key follows, sorted, after an extra ``=`` that old parsers ignore.
    """

    COUNT = "count"
    BYTES = "bytes"
    COUNT_HARD = "countHardLimit"
    BYTES_HARD = "byteHardLimit"

    def __init__(self, values: dict[str, int] | None = None) -> None:
        self.values: dict[str, int] = dict(values or {})

    @classmethod
    def parse(cls, data: bytes | str | None) -> StatsTrack:
        """Parse as StatsTrack(String) does; ValueError where Java would throw."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
        track = cls()
        if not text:
            return track
        for pair in _java_split(text, "[,;]+"):
            kv = _java_split(pair, "=")
            if len(kv) < 2:
                raise ValueError(f"malformed quota entry {pair!r}")
            track.values[kv[0]] = -1 if kv[1] == "" else _parse_long(kv[1])
        return track

    def get(self, key: str) -> int:
        return self.values.get(key, -1)

    @property
    def count(self) -> int:
        return self.get(self.COUNT)

    @count.setter
    def count(self, value: int) -> None:
        self.values[self.COUNT] = value

    @property
    def size(self) -> int:
        """The ``bytes`` entry."""
        return self.get(self.BYTES)

    @size.setter
    def size(self, value: int) -> None:
        self.values[self.BYTES] = value

    @property
    def count_hard_limit(self) -> int:
        return self.get(self.COUNT_HARD)

    @property
    def byte_hard_limit(self) -> int:
        return self.get(self.BYTES_HARD)

    def __str__(self) -> str:
        text = f"count={self.count},bytes={self.size}"
        extra = sorted(k for k in self.values if k not in (self.COUNT, self.BYTES))
        if extra:
            text += "=" + "".join(f";{k}={self.values[k]}" for k in extra)
        return text

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatsTrack) and self.values == other.values

    def __repr__(self) -> str:
        return f"StatsTrack({self})"


_JAVA_TRIM = "".join(map(chr, range(33)))


def _components(path: str) -> list[str]:
    # PathTrie.split: drop components that String.trim() would leave empty.
    return [c for c in path.split("/") if c.strip(_JAVA_TRIM)]


class QuotaIndex:
    """The paths that have a quota (DataTree's pTrie), by normalized path."""

    __slots__ = ("roots",)

    def __init__(self) -> None:
        self.roots: set[str] = set()

    def add(self, path: str) -> None:
        parts = _components(path)
        if parts:  # the root itself never counts as a quota prefix
            self.roots.add("/" + "/".join(parts))

    def remove(self, path: str) -> None:
        parts = _components(path)
        if parts:
            self.roots.discard("/" + "/".join(parts))

    def max_prefix(self, path: str) -> str | None:
        """getMaxPrefixWithQuota: the deepest quota root at or above ``path``."""
        roots = self.roots
        if not roots:
            return None
        return _deepest(roots, path)


def _deepest(roots: set[str] | frozenset[str], path: str) -> str | None:
    found = None
    prefix = ""
    for part in _components(path):
        prefix = f"{prefix}/{part}"
        if prefix in roots:
            found = prefix
    return found


# -- the tree side: called by DataTree after it changed a node ---------------

def on_create(tree: DataTree, path: str, parent_path: str, name: str,
              data: bytes | None) -> None:
    index = tree.quota
    if parent_path.startswith(QUOTA_ZOOKEEPER):
        if name == LIMIT_NODE:
            index.add(parent_path[len(QUOTA_ZOOKEEPER):])
        if name == STAT_NODE:
            update_quota_for_path(tree, parent_path[len(QUOTA_ZOOKEEPER):])
    prefix = index.max_prefix(path)
    if prefix is not None:
        update_quota_stat(tree, prefix, len(data) if data else 0, 1)


def on_delete(tree: DataTree, path: str, parent_path: str, name: str,
              data: bytes | None) -> None:
    index = tree.quota
    if name == LIMIT_NODE and parent_path.startswith(PROC_ZOOKEEPER):
        index.remove(parent_path[len(QUOTA_ZOOKEEPER):])
    prefix = index.max_prefix(path)
    if prefix is not None:
        update_quota_stat(tree, prefix, -(len(data) if data else 0), -1)


def on_set_data(tree: DataTree, path: str, old: bytes | None, new: bytes | None) -> None:
    prefix = tree.quota.max_prefix(path)
    if prefix is not None:
        update_quota_stat(tree, prefix, (len(new) if new else 0) - (len(old) if old else 0), 0)


def update_quota_stat(tree: DataTree, prefix: str, bytes_diff: int, count_diff: int) -> None:
    """Add to the count and bytes of ``prefix``'s stats node, in place."""
    path = stat_path(prefix)
    node = tree.nodes.get(path)
    if node is None:
        log.error("Missing node for stat %s", path)
        return
    try:
        stats = StatsTrack.parse(node.data)
    except ValueError as e:
        log.error("Cannot update quota stats %s: %s", path, e)
        return
    stats.count += count_diff
    stats.size += bytes_diff
    node.data = stats.to_bytes()


def subtree_counts(tree: DataTree, path: str) -> tuple[int, int]:
    """(nodes, data bytes) of ``path`` and everything below it (DataTree.getCounts)."""
    count = size = 0
    stack = [path or "/"]
    nodes = tree.nodes
    while stack:
        p = stack.pop()
        node = nodes.get(p)
        if node is None:
            continue
        count += 1
        size += len(node.data) if node.data else 0
        if node.children:
            base = "" if p == "/" else p
            stack.extend(f"{base}/{c}" for c in node.children)
    return count, size


def update_quota_for_path(tree: DataTree, path: str) -> None:
    """Recompute the stats node of quota root ``path`` from its subtree."""
    count, size = subtree_counts(tree, path)
    spath = stat_path(path)
    node = tree.nodes.get(spath)
    if node is None:
        log.warning("Missing quota stat node %s", spath)
        return
    node.data = StatsTrack({StatsTrack.COUNT: count, StatsTrack.BYTES: size}).to_bytes()


def setup_quota(tree: DataTree) -> None:
    """After loading a snapshot: register every quota and recompute its stats
    (DataTree.setupQuota; limits nodes are found as leaves under /zookeeper/quota)."""
    tree.quota.roots.clear()
    if QUOTA_ZOOKEEPER not in tree.nodes:
        return
    end = "/" + LIMIT_NODE
    stack = [QUOTA_ZOOKEEPER]
    while stack:
        path = stack.pop()
        node = tree.nodes.get(path)
        if node is None:
            continue
        if node.children:
            stack.extend(f"{path}/{c}" for c in node.children)
        elif path.endswith(end):
            real = path[len(QUOTA_ZOOKEEPER):path.index(end)]
            update_quota_for_path(tree, real)
            tree.quota.add(real)


# -- the prep side: ZooKeeperServer.checkQuota ------------------------------

class RateLogger:
    """ZooKeeper's RateLogger: the first of a run of identical messages is
    logged at once, repeats within ``interval`` ms are counted and summed up."""

    def __init__(self, logger: logging.Logger, interval_ms: int = 100) -> None:
        self.log = logger
        self.interval = interval_ms
        self.msg: str | None = None
        self.count = 0
        self.stamp = 0.0

    def flush(self) -> None:
        if self.msg is not None and self.count > 0:
            times = f"[{self.count} times] " if self.count > 1 else ""
            self.log.warning("%sMessage: %s", times, self.msg)
        self.msg = None
        self.count = 0

    def rate_limit_log(self, msg: str) -> None:
        now = time.monotonic() * 1000
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
              create: bool) -> None:
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
                    f"{'hard' if hard else 'soft'}CountLimit={limit}]")
                if hard:
                    raise ZkError(Err.QUOTAEXCEEDED, prefix)
        if check_bytes:
            new_bytes = current.size + pending_bytes + bytes_diff
            hard = limits.byte_hard_limit > -1
            limit = limits.byte_hard_limit if hard else limits.size
            if new_bytes > limit:
                self.rate_log.rate_limit_log(
                    f"Quota exceeded: {prefix} [current bytes={new_bytes}, "
                    f"{'hard' if hard else 'soft'}ByteLimit={limit}]")
                if hard:
                    raise ZkError(Err.QUOTAEXCEEDED, prefix)


def _future_data(prep: Prep, path: str) -> tuple[bytes | None] | None:
    """(data,) of ``path`` in the future state, or None when it will not exist."""
    change = prep._by_path.get(path)
    if change is not None:
        return (change.data,) if change.exists else None
    node = prep.tree.get(path)
    return None if node is None else (node.data,)


def _future_roots(prep: Prep) -> set[str] | frozenset[str]:
    """The quota roots once every in-flight transaction has been applied."""
    roots: set[str] | frozenset[str] = prep.tree.quota.roots
    end = "/" + LIMIT_NODE
    copied = False
    for path, change in prep._by_path.items():
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
    return _deepest(roots, path) if roots else None


def _in_flight_usage(prep: Prep, prefix: str) -> tuple[int, int]:
    """(count, bytes) that the in-flight transactions will add to ``prefix``'s stats."""
    if not prep._by_path:
        return 0, 0
    roots = _future_roots(prep)
    dcount = dbytes = 0
    for path, change in prep._by_path.items():
        if _deepest(roots, path) != prefix:
            continue
        node = prep.tree.get(path)
        if node is not None:
            dcount -= 1
            dbytes -= node.dataLength
        if change.exists:
            dcount += 1
            dbytes += len(change.data) if change.data else 0
    return dcount, dbytes
