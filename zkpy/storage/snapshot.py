"""Snapshots in Apache ZooKeeper's ``snapshot.<zxid>`` format, taken fuzzily.

Layout (FileSnap + SerializeUtils + DataTree.serialize): FileHeader ("ZKSN",
2, -1); int session count, then (long id, int timeout) per session; the ACL
map (int count, then long id + vector<ACL> per entry); the nodes, parents
before children, as (ustring path, DataNode) with the root at path ""; the
path "/" as end marker; then the seal: long Adler32 of every byte before it
and the string "/". With ``zookeeper.digest.enabled`` (the default, see
``zkpy.tree.digest``), as ZooKeeper 3.6+: then a ZxidDigest (long zxid, int
digest version, long tree digest) and a second seal over everything before
it. The reader checks the trailer as ZooKeeper's FileSnap does: missing (an
older snapshot) is a warning, a bad second seal makes the snapshot invalid,
and the (zxid, digest) becomes the tree's digest to meet during replay.

Fuzzy: ``SnapshotMaker`` walks the live tree a slice at a time between
requests (the tree keeps changing underneath), recording the zxid it started
at. Because applying a transaction is idempotent, replaying the log from that
zxid over the snapshot yields exactly the live tree. Node records are
produced first and the ACL map last (it must hold every ACL a written node
refers to), and ``write_snapshot`` puts them in file order. The digest
trailer is taken when the walk ends (``DataTree.zxid_digest``): the state
that replaying the log reaches at that zxid.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.codec import JuteError, decode, encode, layout
from zkpy.storage.formats import SNAP_MAGIC, VERSION, snapshot_name
from zkpy.storage.fs import LOCAL, FileSystem, write_atomically
from zkpy.storage.snapstream import SnapStreamError, SnapStreamReader
from zkpy.tree.datatree import DataTree, Node
from zkpy.tree.digest import EXCLUDED_PREFIX, pack_stat
from zkpy.tree.quota import setup_quota

log = logging.getLogger("zkpy.storage")

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_SESSION = struct.Struct(">qi")
_STATP = layout(S.StatPersisted)
_ACL_STATP = layout(S.StatPersisted, prefix="q")  # a DataNode's ACL id, then its StatPersisted
# ... and the next node's path length, in the same unpack (one call a node fewer)
_REST_NEXT = struct.Struct(_ACL_STATP.format + "i")
_END_PATH = _INT.pack(1) + b"/"
_ZXID_DIGEST = struct.Struct(">qiq")  # DataTree.ZxidDigest: zxid, digestVersion, digest
_ZXID_HEAD = struct.Struct(">qi")


def _ustring(s: str) -> bytes:
    b = s.encode("utf-8")
    return _INT.pack(len(b)) + b


class AclUnknown(Exception):
    """A node's ACL is not in an ACL map already written (``acls_first``): it
    came with a change made since, and the stream cannot carry it."""


class SnapshotMaker:
    """Serializes a live tree in slices: ``step(n)`` handles up to n nodes.

    A file's ACL map is written last, holding every ACL a written node refers
    to. A SNAP's stream puts the map before the nodes and goes out while the
    tree is walked: ``acls_first()`` fixes the map to the tree's ACLs now,
    and ``step`` raises ``AclUnknown`` if it meets a node whose ACL arrived
    later (the caller drops that learner, which then syncs again)."""

    def __init__(self, tree: DataTree, sessions: dict[int, int]) -> None:
        self.tree = tree
        self.zxid = tree.last_zxid
        self.sessions = dict(sessions)
        self._stack = ["/"]
        self._acl_ids: dict[tuple[Any, ...], int] = {}
        self.chunks: list[bytes] = []
        self.done = False
        self.count = 0
        self.digest: tuple[int, int, int] | None = None  # the trailer, once done
        self._acls_fixed = False

    def acls_first(self) -> None:
        """Fix the ACL map now to every ACL the tree holds, so ``head`` can be
        written before the nodes (the tree keeps each distinct ACL it ever saw)."""
        for acl in self.tree.acl_lists():
            self._acl_id(acl)
        self._acls_fixed = True

    def _acl_id(self, acl: tuple[Any, ...]) -> int:
        ident = self._acl_ids.get(acl)
        if ident is None:
            if self._acls_fixed:
                raise AclUnknown(f"an ACL newer than the map: {acl!r}")
            ident = len(self._acl_ids) + 1
            self._acl_ids[acl] = ident
        return ident

    def step(self, budget: int = 2000) -> bool:
        """Serialize up to ``budget`` nodes; True once the whole tree is done."""
        nodes = self.tree.nodes
        out = []
        stack = self._stack
        while stack and budget > 0:
            path = stack.pop()
            node = nodes.get(path)
            if node is None:
                continue  # deleted since we saw its parent; the log replay agrees
            budget -= 1
            out.append(self._node_bytes("" if path == "/" else path, node))
            if node.children:
                # Sorted, reversed onto the stack: children come out in name order
                # (their paths share the parent's prefix, so they sort as names do).
                stack.extend(sorted(node.children, reverse=True))
        self.chunks.append(b"".join(out))
        self.count += len(out)
        if not stack:
            self.done = True
            self.digest = self.tree.zxid_digest()
        return self.done

    def _node_bytes(self, path: str, node: Node) -> bytes:
        data = node.data
        body = _INT.pack(-1) if data is None else _INT.pack(len(data)) + data
        return (_ustring(path) + body + _LONG.pack(self._acl_id(node.acl))
                + _STATP.pack(node.czxid, node.mzxid, node.ctime, node.mtime, node.version,
                              node.ccount, node.aversion, node.owner, node.pzxid))

    def head(self) -> bytes:
        """Header, sessions and ACL map: written before the node chunks."""
        parts = [S.FileHeader(SNAP_MAGIC, VERSION, -1).encode(), _INT.pack(len(self.sessions))]
        parts.extend(_SESSION.pack(sid, to) for sid, to in self.sessions.items())
        parts.append(_INT.pack(len(self._acl_ids)))
        for acl, ident in self._acl_ids.items():
            parts.append(_LONG.pack(ident))
            parts.append(_INT.pack(len(acl)))
            parts.extend(encode(a) for a in acl)
        return b"".join(parts)


#: A snapshot's trailer (``SnapshotMaker.digest``), or what says it once the chunks
#: are all written (a snapshot written while its tree is walked: the digest is the
#: walk's last word).
Trailer = tuple[int, int, int] | None | Callable[[], tuple[int, int, int] | None]


def write_snapshot(path: str, head: bytes, chunks: Iterable[bytes], fsync: bool = True,
                   digest: Trailer = None, fs: FileSystem = LOCAL) -> None:
    """Write the file through a temporary name, so a crash never leaves half a snapshot
    under the real name (synced, renamed, its directory synced: ZOOKEEPER-2872).
    ``digest``: the trailer, if any."""
    write_atomically(fs, path, _sealed(head, chunks, digest), fsync)


def _sealed(head: bytes, chunks: Iterable[bytes], digest: Trailer) -> Iterator[bytes]:
    checksum = 1
    for piece in _pieces(head, chunks):
        checksum = zlib.adler32(piece, checksum)
        yield piece
    yield _seals(checksum, digest() if callable(digest) else digest)


def _pieces(head: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield head
    yield from chunks
    yield _END_PATH


def _seals(checksum: int, digest: tuple[int, int, int] | None) -> bytes:
    """FileSnap.serialize's end: the seal, then the ZxidDigest and a second seal."""
    seal = _LONG.pack(checksum) + _END_PATH
    if digest is None:
        return seal
    trailer = seal + _ZXID_DIGEST.pack(*digest)
    return trailer + _LONG.pack(zlib.adler32(trailer, checksum)) + _END_PATH


class SnapshotInvalid(Exception):
    pass


def load_snapshot(path: str, fs: FileSystem = LOCAL) -> tuple[DataTree, dict[int, int], int]:
    """(tree, sessions {id: timeout}, zxid from the name) or SnapshotInvalid."""
    blob = fs.read(path)
    name = os.path.basename(path)
    try:
        return _parse(blob, name)
    except (JuteError, struct.error, IndexError, KeyError, UnicodeDecodeError) as e:
        raise SnapshotInvalid(f"{name}: {e}") from None


def verify_snapshot(blob: bytes, zxid: int) -> None:
    """SnapshotInvalid unless ``blob`` is a whole snapshot whose checksum holds:
    what may be kept on disk, checked without building its tree (whoever installs
    it parses it anyway)."""
    name = snapshot_name(zxid)
    try:
        hdr, off = decode(S.FileHeader, blob, 0)
        if hdr.magic != SNAP_MAGIC:
            raise SnapshotInvalid(f"{name}: not a snapshot (magic 0x{hdr.magic:x})")
        end = SnapStreamReader(signed=False).feed(blob, off)
        if end is None:
            raise SnapshotInvalid(f"{name}: cut short before its end marker")
        end = _check_seal(blob, end, name)
        if end < len(blob):
            _read_digest(blob, end, name)  # a trailer present must be sealed as it says
    except (JuteError, SnapStreamError, struct.error, IndexError) as e:
        raise SnapshotInvalid(f"{name}: {e}") from None


def newest_change(tree: DataTree) -> int:
    """The highest zxid any node's stat records (created, changed, children changed):
    how far a fuzzy snapshot of ``tree`` may reach past the zxid it is named for."""
    top = 0
    for node in tree.nodes.values():
        top = max(top, node.mzxid, node.pzxid)
    return top


def parse_snapshot(blob: bytes, zxid: int,
                   trailer: bool | None = True) -> tuple[DataTree, dict[int, int]]:
    """A snapshot's bytes (a file's, or a Zab SNAP's) as (tree at ``zxid``, sessions).
    ``trailer=None``: a SNAP's bytes, which carry no digest trailer when they came
    as a stream (ZooKeeper's serializeSnapshot writes none): one is used if there,
    and its absence is not worth a warning."""
    name = snapshot_name(zxid)
    try:
        tree, sessions, _ = _parse(blob, name, trailer)
    except (JuteError, struct.error, IndexError, KeyError, UnicodeDecodeError) as e:
        raise SnapshotInvalid(f"{name}: {e}") from None
    tree.last_zxid = zxid
    return tree, sessions


def _parse(blob: bytes, name: str,
           trailer: bool | None = True) -> tuple[DataTree, dict[int, int], int]:
    hdr, off = decode(S.FileHeader, blob, 0)
    if hdr.magic != SNAP_MAGIC:
        raise SnapshotInvalid(f"{name}: not a snapshot (magic 0x{hdr.magic:x})")
    sessions, acls, off = read_head(blob, off)
    tree = DataTree.empty()
    off, done = read_nodes(blob, off, tree, acls)
    if not done:
        raise SnapshotInvalid(f"{name}: cut short before its end marker")
    off = _check_seal(blob, off, name)
    zxid = int(name.split(".", 1)[1], 16) if "." in name else 0
    setup_quota(tree)  # as DataTree.deserialize: register the quotas, recompute their stats
    if tree.digest_on and (trailer or (trailer is None and off < len(blob))):
        found = _read_digest(blob, off, name)
        if found is not None:
            tree.digests.loaded(*found, zxid, tree.digest)
    return tree, sessions, zxid


def read_head(blob: bytes, off: int) -> tuple[dict[int, int], dict[int, list[Any]], int]:
    """The sessions and the ACL map from ``off`` (just past the FileHeader):
    (sessions {id: timeout}, ACL map, the offset of the first node)."""
    (count,) = _INT.unpack_from(blob, off)
    off += 4
    sessions: dict[int, int] = {}
    for _ in range(count):
        sid, timeout = _SESSION.unpack_from(blob, off)
        off += _SESSION.size
        sessions[sid] = timeout
    (count,) = _INT.unpack_from(blob, off)
    off += 4
    acls: dict[int, list[Any]] = {}
    for _ in range(count):
        (ident,) = _LONG.unpack_from(blob, off)
        (n,) = _INT.unpack_from(blob, off + 8)
        off += 12
        lst = []
        for _ in range(max(n, 0)):
            acl, off = decode(S.ACL, blob, off)
            lst.append(acl)
        acls[ident] = lst
    return sessions, acls, off


def _check_seal(blob: bytes, off: int, name: str) -> int:
    """SnapStream.checkSealIntegrity: the Adler32 of every byte before, then "/"."""
    (stored,) = _LONG.unpack_from(blob, off)
    if zlib.adler32(memoryview(blob)[:off]) != stored:
        raise SnapshotInvalid(f"{name}: checksum mismatch")
    return off + _LONG.size + len(_END_PATH)


def _read_digest(blob: bytes, off: int, name: str) -> tuple[int, int, int] | None:
    """DataTree.deserializeZxidDigest, then the second seal; None if there is none."""
    head = off + 12  # long zxid, int digestVersion
    if head <= len(blob):
        zxid, version = _ZXID_HEAD.unpack_from(blob, off)
        if version >= 2 and head + 8 <= len(blob):
            (value,) = _LONG.unpack_from(blob, head)
            _check_seal(blob, head + 8, name)
            return zxid, version, value
        n = _INT.unpack_from(blob, head)[0] if head + 4 <= len(blob) else -1
        if version < 2 and 0 <= n and head + 4 + n <= len(blob):
            # Digest version 1 kept the digest as a hex string.
            text = blob[head + 4:head + 4 + n].decode("ascii", "replace")
            try:
                value = int(text, 16) if text else 0
            except ValueError:
                raise SnapshotInvalid(f"{name}: digest {text!r} is not hex") from None
            _check_seal(blob, head + 4 + n, name)
            return zxid, version, value
    log.warning("%s: Got EOF exception while reading the digest, likely due to the reading "
                "an older snapshot.", name)
    return None


def read_nodes(blob: bytes, off: int, tree: DataTree, acls: dict[int, list[Any]],
               interned: dict[int, tuple[Any, ...]] | None = None) -> tuple[int, bool]:
    """Nodes from ``off`` into ``tree``, up to and past the "/" end marker, or up to
    the end of ``blob`` if that ends on a node's end: (offset, end marker seen).
    Start-up time with a big tree is spent here, so the layout is unpacked by hand:
    path, data, ACL id and StatPersisted per node. ``interned`` carries the ACL ids
    already interned from one call to the next (a tree built a piece at a time)."""
    nodes = tree.nodes
    if interned is None:
        interned = {}
    unpack_int = _INT.unpack_from
    unpack_rest = _ACL_STATP.unpack_from
    rest_size = _ACL_STATP.size
    unpack_rest_next = _REST_NEXT.unpack_from
    end = len(blob)
    tail = end - rest_size - 4  # past this, the next path length cannot follow a node
    digest_on = tree.digest_on
    total = 0
    crc32 = zlib.crc32
    # The parent of the node before, while its siblings follow (a snapshot lists a
    # node's children together): the path's last "/" and the prefix up to it.
    cut, prefix = -2, ""
    siblings: set[str] = set()  # the parent's children
    excluded = False  # the parent is under /zookeeper/, which digests leave out
    last_acl_id: int | None = None
    acl: tuple[Any, ...] = ()
    n: int | None = None  # the next path length, when the last unpack read it
    while off < end:
        if n is None:
            (n,) = unpack_int(blob, off)
        if n < 0 or off + 4 + n > end:
            raise SnapshotInvalid(f"bad path length {n} at offset {off}")
        raw = blob[off + 4:off + 4 + n]
        path = raw.decode("utf-8")
        off += 4 + n
        if path == "/":
            tree.digest_sum += total
            return off, True
        (n,) = unpack_int(blob, off)
        off += 4
        if n == -1:
            data = None
        elif n < -1 or off + n > end:
            raise SnapshotInvalid(f"bad data length {n} for {path!r}")
        else:
            data = blob[off:off + n]
            off += n
        if off <= tail:
            acl_id, czxid, mzxid, ctime, mtime, version, ccount, aversion, owner, pzxid, n = \
                unpack_rest_next(blob, off)
        else:
            acl_id, czxid, mzxid, ctime, mtime, version, ccount, aversion, owner, pzxid = \
                unpack_rest(blob, off)
            n = None
        off += rest_size
        if acl_id != last_acl_id:
            known = interned.get(acl_id)
            if known is None:
                known = interned[acl_id] = tree.intern_acl(_acl_list(acls, acl_id, path))
            acl, last_acl_id = known, acl_id
        # Equal stamps share one int, as a node the tree creates does (its czxid,
        # mzxid and pzxid are one zxid, its ctime and mtime one time, until they
        # move): 32 bytes a stamp per untouched znode.
        node = Node(data, acl, czxid, ctime, owner)
        if mzxid != czxid:
            node.mzxid = mzxid
        if pzxid != czxid:
            node.pzxid = pzxid if pzxid != mzxid else node.mzxid
        if mtime != ctime:
            node.mtime = mtime
        if version:
            node.version = version
        if ccount:
            node.ccount = ccount
        if aversion:
            node.aversion = aversion
        if path:
            # Hang it under its parent (split_path, inlined: this runs once per znode).
            i = path.rfind("/")
            if i < 0 or i == len(path) - 1:
                # "a", "/a/", "//": no node the tree can hang (a walk would loop on "//").
                raise SnapshotInvalid(f"not a znode path: {path!r}")
            if i != cut or not path.startswith(prefix):
                parent_path = path[:i] or "/"
                parent = nodes.get(parent_path)
                if parent is None:
                    raise SnapshotInvalid(f"unable to find parent {parent_path} of path {path}")
                cut, prefix = i, path[:i + 1]
                excluded = prefix.startswith(EXCLUDED_PREFIX)
                if parent.children is None:
                    parent.children = set()
                siblings = parent.children
            siblings.add(path)
        else:
            path = "/"
            excluded = False
        if digest_on and not excluded:
            # zkpy.tree.digest.node_digest, inlined for start-up time; the path's bytes
            # are the file's (the root's are "", as DataTree.deserialize digests it).
            stat = pack_stat(czxid, mzxid, pzxid, ctime, mtime, version, ccount, aversion, owner)
            if not data:
                dg = crc32(raw + stat)
            elif len(data) <= 4096:
                dg = crc32(raw + data + stat)
            else:
                dg = crc32(stat, crc32(data, crc32(raw)))
            node.dg = dg
            total += dg
        if owner:
            tree.index_kind(path, owner)
        before = nodes.setdefault(path, node)
        if before is not node:
            # A path listed twice: the later node replaces the first, in the digest
            # too (as ZooKeeper's NodeHashMap.put), and parents are looked up again.
            nodes[path] = node
            total -= before.dg
            cut = -2
    tree.digest_sum += total
    return off, False


def _acl_list(acls: dict[int, list[Any]], acl_id: int, path: str) -> list[Any]:
    acl = acls.get(acl_id)
    if acl is not None:
        return acl
    if acl_id != -1:
        raise SnapshotInvalid(f"ACL id {acl_id} of {path} is not in the ACL map")
    return [S.ACL(31, S.Id("world", "anyone"))]


def write_tree(path: str, tree: DataTree, sessions: dict[int, int], fsync: bool = True,
               fs: FileSystem = LOCAL) -> None:
    """Take a whole snapshot at once (start-up, shutdown, tests)."""
    maker = SnapshotMaker(tree, sessions)
    while not maker.step(1 << 30):
        pass
    write_snapshot(path, maker.head(), maker.chunks, fsync, maker.digest, fs)


def snapshot_bytes(tree: DataTree, sessions: dict[int, int]) -> bytes:
    """The same bytes as a snapshot file (what Zab's SNAP sync will send)."""
    maker = SnapshotMaker(tree, sessions)
    while not maker.step(1 << 30):
        pass
    return made_bytes(maker)


def made_bytes(maker: SnapshotMaker) -> bytes:
    """A finished SnapshotMaker's file bytes, seal included."""
    body = b"".join(_pieces(maker.head(), maker.chunks))
    return body + _seals(zlib.adler32(body), maker.digest)
