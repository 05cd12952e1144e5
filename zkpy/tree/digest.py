"""Apache ZooKeeper's tree digest (ZOOKEEPER-3114), bit for bit, and its bookkeeping.

The digest of a znode is ZooKeeper's ``DigestCalculator`` (digest version 2):
CRC32 over the path's bytes (UTF-8; the root is the empty string), then the
data (if any), then 60 bytes of stat, big-endian: czxid, mzxid, pzxid, ctime,
mtime (longs), version, cversion, aversion (ints; cversion is the *stored*
count of child creations, see ``zkpy.tree.datatree.Node``), ephemeralOwner
(long, the raw value: containers and TTL nodes included). Nodes under
``/zookeeper/`` count 0 (ZooKeeper excludes them: quota stat nodes are
updated locally); ``/zookeeper`` itself counts.

The tree digest is ``AdHash``: the sum of the node digests, as a Java long
(wrapping at 64 bits). ``DataTree`` keeps it up to date on every apply
(``digest_of`` each node a transaction touches, and each node caches its
own value so a removal subtracts without recomputing);
``zkpy.server.prep`` precomputes the digest a transaction will leave, which
travels in the txn log entry and the PROPOSAL as a ``TxnDigest`` (in two
steps, ``path_data_crc`` then ``stat_digest``: see ``CrcMemo``).

``DigestChecks`` is the per-tree bookkeeping of ``DataTree``'s digest
methods in ZooKeeper: the digest expected after a transaction is compared
with the tree's (a mismatch is logged and counted, ``digest_mismatches_count``
in ``mntr``, and the server carries on, as 3.8 does); a snapshot's trailer
names a (zxid, digest) to check once replay reaches that zxid, and no txn
digest is checked before (the tree is "fuzzy" until then); every 128th
zxid's digest is kept (1024 of them) for the ``hash`` command.

``zookeeper.digest.enabled`` (default true) is process-wide in ZooKeeper (a
static read at start-up); here too: ``set_enabled`` before any tree is built.
Disabled, trees digest to 0, no ``TxnDigest`` is written or read, and
snapshots have no trailer.

Pure: no I/O, no clock. Logging is deterministic (the first mismatch at
ERROR with its details; a warning whenever the count reaches a power of two).
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # (typed for the compiled build: a Node's fields are read directly)
    from zkpy.tree.datatree import Node

log = logging.getLogger("zkpy.digest")

DIGEST_VERSION: Final = 2
PROPERTY = "zookeeper.digest.enabled"
#: ZooKeeper's DIGEST_LOG_INTERVAL and DIGEST_LOG_LIMIT (the ``hash`` command's history).
LOG_INTERVAL = 128
LOG_LIMIT = 1024

EXCLUDED_PREFIX: Final = "/zookeeper/"
#: The stat bytes of a node's digest: czxid, mzxid, pzxid, ctime, mtime, version,
#: cversion, aversion, ephemeralOwner.
_STAT: Final = struct.Struct(">qqqqqiiiq").pack
pack_stat = _STAT
_crc: Final = zlib.crc32
MASK64: Final = (1 << 64) - 1

_enabled = True


def enabled() -> bool:
    return _enabled


def set_enabled(flag: bool) -> None:
    """``zookeeper.digest.enabled``; trees built afterwards follow it."""
    global _enabled
    _enabled = bool(flag)


def enabled_in(props: Mapping[str, str]) -> bool:
    """The property as ZooKeeperServer reads it: Boolean.parseBoolean, default "true"."""
    return props.get(PROPERTY, "true").strip().lower() == "true"


def node_digest(path: str, data: bytes | None, czxid: int, mzxid: int, pzxid: int,
                ctime: int, mtime: int, version: int, cversion: int, aversion: int,
                owner: int) -> int:
    """DigestCalculator.calculateDigest: an unsigned 32-bit CRC (0 under /zookeeper/),
    in the two steps prep takes."""
    if path.startswith(EXCLUDED_PREFIX):
        return 0
    return stat_digest(path_data_crc(path, data), czxid, mzxid, pzxid, ctime, mtime, version,
                       cversion, aversion, owner)


def digest_of(path: str, node: Node) -> int:
    """``node_digest`` of a tree node (a ``Node``: ``ccount`` is its stored cversion),
    written out: the tree computes one for every node a write touches."""
    if path.startswith(EXCLUDED_PREFIX):
        return 0
    head = path.encode() if path != "/" else b""  # DigestCalculator maps "/" to ""
    stat = _STAT(node.czxid, node.mzxid, node.pzxid, node.ctime, node.mtime, node.version,
                 node.ccount, node.aversion, node.owner)
    data = node.data
    if not data:
        return _crc(head + stat)
    if len(data) <= 4096:
        return _crc(head + data + stat)  # one C call beats three for small values
    return _crc(stat, _crc(data, _crc(head)))


def path_data_crc(path: str, data: bytes | None) -> int:
    """The CRC a node's digest starts with: its path's bytes, then its data."""
    head = path.encode() if path != "/" else b""
    return _crc(data, _crc(head)) if data else _crc(head)


def stat_digest(crc: int, czxid: int, mzxid: int, pzxid: int, ctime: int, mtime: int,
                version: int, cversion: int, aversion: int, owner: int) -> int:
    """``node_digest`` continued from ``path_data_crc`` with the node's stat (a
    CRC can be carried on: CRC(a + b) is CRC(b) started from CRC(a))."""
    return _crc(_STAT(czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion, owner), crc)


class CrcMemo:
    """The path-and-data part of a node digest, computed once per write.

    ``zkpy.server.prep`` computes the digest of every node a write changes, to
    put the tree's future digest in the txn; the tree computes them again as
    it applies the write. Most of a digest's cost is its CRC over the data
    (1 KiB and more), and on the member that prepared the write that is the
    very same bytes object both times. Prep notes here, by path, the data it
    covered and the CRC so far; the tree, applying a node whose data is that
    same object, carries the CRC on over its own stat. The digest is the CRC
    of the same bytes either way, so nothing is checked less: the stat is the
    tree's own, and a kept object cannot change or be replaced by another at
    the same address (bytes are immutable; the entry holds it). A follower,
    which did not prepare the write, finds nothing and computes it whole.

    Entries leave when the tree takes them; those of writes that never apply
    (refused, or a leader's lost quorum) are dropped with ``clear`` when the
    preparer has nothing in flight, or when ``limit`` of them gather.
    """

    __slots__ = ("by_path", "limit")

    def __init__(self, limit: int = 16384) -> None:
        self.by_path: dict[str, tuple[bytes | None, int]] = {}
        self.limit = limit

    def note(self, path: str, data: bytes | None, crc: int) -> None:
        by_path = self.by_path
        if len(by_path) >= self.limit:
            by_path.clear()
        by_path[path] = (data, crc)

    def digest(self, path: str, data: bytes | None, czxid: int, mzxid: int, pzxid: int,
               ctime: int, mtime: int, version: int, cversion: int, aversion: int,
               owner: int) -> int:
        """``node_digest``, its path-and-data CRC noted for the tree to carry on from."""
        if path.startswith(EXCLUDED_PREFIX):
            return 0
        crc = path_data_crc(path, data)
        self.note(path, data, crc)
        return stat_digest(crc, czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion,
                           owner)

    def take(self, path: str, data: bytes | None) -> int:
        """The noted CRC of ``path`` with exactly ``data`` (this object); -1 if none."""
        hit = self.by_path.get(path)
        if hit is None or hit[0] is not data:
            return -1
        del self.by_path[path]
        return hit[1]

    def clear(self) -> None:
        self.by_path.clear()


def as_long(total: int) -> int:
    """A running sum of node digests as the Java long ZooKeeper's AdHash holds."""
    total &= MASK64
    return total - (1 << 64) if total >> 63 else total


def recompute(nodes: Mapping[str, Any]) -> int:
    """The tree digest from scratch (as a loaded snapshot computes it)."""
    return as_long(sum(digest_of(path, node) for path, node in nodes.items()))


class DigestChecks:
    """DataTree's digest bookkeeping: expected vs actual, snapshot target, history."""

    __slots__ = ("mismatches", "target", "history", "on_mismatch", "_first_logged", "_passed",
                 "unchecked_until")

    def __init__(self) -> None:
        self.mismatches = 0
        # digestFromLoadedSnapshot: (zxid, version, digest) to check when replay reaches zxid.
        self.target: tuple[int, int, int] | None = None
        # A SNAP streamed without a trailer may be fuzzy up to here (``fuzzy_until``):
        # the txns replayed over it are not compared until then.
        self.unchecked_until = 0
        self.history: deque[tuple[int, int]] = deque(maxlen=LOG_LIMIT)
        # DigestWatcher: called with the zxid of each mismatch (tests, simulations).
        self.on_mismatch: list[Callable[[int], None]] = []
        self._first_logged = False
        self._passed = False

    def carry_from(self, old: DigestChecks) -> None:
        """A server replacing its tree keeps its mismatch count and watchers."""
        if old is not self:
            self.mismatches += old.mismatches
            self._first_logged = self._first_logged or old._first_logged
            self.on_mismatch = old.on_mismatch

    def applied(self, zxid: int, actual: int, expected: Any, hdr: Any, txn: Any) -> None:
        """After a transaction: ``actual`` the tree's digest, ``expected`` its TxnDigest."""
        if self.target is not None:
            self._reached(zxid, actual)
        elif zxid % LOG_INTERVAL == 0:
            self.history.append((zxid, actual))
        if expected is None or self.target is not None or zxid <= self.unchecked_until:
            return
        if expected.version != DIGEST_VERSION:
            log.debug("Digest version %d of txn 0x%x is not ours (%d); not compared",
                      expected.version, zxid, DIGEST_VERSION)
            return
        if expected.treeDigest != actual:
            self._mismatch(zxid, actual, expected.treeDigest, hdr, txn)

    def fuzzy_until(self, zxid: int) -> None:
        """The tree came from a snapshot that may hold changes up to ``zxid``
        beyond the zxid it was named for (a SNAP stream carries no trailer to
        say): replaying those changes gives no state the leader had, so their
        digests are not compared."""
        self.unchecked_until = max(self.unchecked_until, zxid)

    def loaded(self, zxid: int, version: int, digest: int, snap_zxid: int, actual: int) -> None:
        """A snapshot's trailer (DataTree.deserializeZxidDigest, then FileSnap's
        immediate check when the snapshot is not fuzzy)."""
        if zxid <= 0:
            log.info("The digest value is empty in snapshot")
            return
        log.info("The digest in the snapshot has digest version of %d, with zxid as 0x%x, "
                 "and digest value as %d", version, zxid, digest)
        if zxid < snap_zxid:
            log.info("The zxid of snapshot digest 0x%x is smaller than the snapshot's zxid "
                     "0x%x; it is not compared", zxid, snap_zxid)
            return
        self.target = (zxid, version, digest)
        self._reached(snap_zxid, actual)

    def _reached(self, zxid: int, actual: int) -> None:
        assert self.target is not None
        want_zxid, version, digest = self.target
        if zxid < want_zxid:
            return
        if zxid > want_zxid:
            # As ZooKeeper: the target stays (txn digests stay unchecked), said once.
            if not self._passed:
                self._passed = True
                log.warning("The txn 0x%x of snapshot digest does not exist.", want_zxid)
            return
        self.target = None
        if version != DIGEST_VERSION:
            log.info("Digest version changed, local: %d, new: %d, skip comparing digest now.",
                     version, DIGEST_VERSION)
            return
        if actual != digest:
            self._mismatch(zxid, actual, digest, None, None)

    def replayed(self, last_zxid: int) -> None:
        """End of start-up replay: a snapshot digest still waiting was never reached."""
        if self.target is not None:
            log.warning("Highest txn zxid 0x%x is not covering the snapshot digest zxid 0x%x, "
                        "which might lead to inconsistent state", last_zxid, self.target[0])

    def _mismatch(self, zxid: int, actual: int, expected: int, hdr: Any, txn: Any) -> None:
        self.mismatches += 1
        n = self.mismatches
        if not self._first_logged:
            self._first_logged = True
            log.error("First digest mismatch on txn 0x%x: %s %.300s, expected digest is %d, "
                      "actual digest is %d", zxid, hdr, txn, expected, actual)
        if n & (n - 1) == 0:  # ZooKeeper rate-limits this line by time; here by count
            log.warning("Digests are not matching at zxid 0x%x (%d mismatches so far)", zxid, n)
        for watcher in self.on_mismatch:
            watcher(zxid)
