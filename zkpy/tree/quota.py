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

The check before a write (ZooKeeperServer.checkQuota) is the pipeline's
business: ``zkpy.server.quota_check``.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
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

    COUNT: Final = "count"
    BYTES: Final = "bytes"
    COUNT_HARD: Final = "countHardLimit"
    BYTES_HARD: Final = "byteHardLimit"

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
        return deepest_root(roots, path)


def deepest_root(roots: set[str] | frozenset[str], path: str) -> str | None:
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
            stack.extend(node.children)
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
            stack.extend(node.children)
        elif path.endswith(end):
            real = path[len(QUOTA_ZOOKEEPER):path.index(end)]
            update_quota_for_path(tree, real)
            tree.quota.add(real)
