"""The SNAP stream: how a Zab leader sends its whole state to a learner.

ZooKeeper 3.8's LearnerHandler writes an empty SNAP packet on the quorum
connection, then ``ZKDatabase.serializeSnapshot`` straight onto the same
stream, then the string "BenWasHere" (Learner.syncWithLeader checks it:
"Missing signature")::

    int count, then (long id, int timeout) per session
    int count, then (long id, vector<ACL>) per ACL map entry
    (ustring path, DataNode) per node, parents first, the root at path ""
    ustring "/"                          end of the nodes
    ustring "BenWasHere"                 the signature

That is a snapshot file (``zkpy.storage.snapshot``) without its FileHeader in
front and its seal (Adler32 checksum and "/") behind, so the stream is cut
out of snapshot bytes and put back into them here. Inside zkpy's core a SNAP
carries the snapshot file's bytes; ``zkpy.net.peerlinks`` frames the stream.

``SnapStreamReader`` finds where a stream ends in bytes that arrive a piece
at a time: it walks the layout above, remembering how far it got, and
raises ``SnapStreamError`` on bytes that cannot be such a stream. Pure: no
I/O.
"""

from __future__ import annotations

import struct
import zlib

from zkpy.jute import schema as S
from zkpy.storage.formats import SNAP_MAGIC, VERSION

__all__ = ["SIGNATURE", "SnapStreamError", "SnapStreamReader", "stream_of", "stream_head",
           "stream_tail", "snapshot_of"]

SIGNATURE = b"BenWasHere"
_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_HEADER_SIZE = 16  # FileHeader: int magic, int version, long dbid
_SESSION_SIZE = 12
_NODE_TAIL = 8 + 60  # a DataNode's ACL id and StatPersisted, after its data
_END_PATH = _INT.pack(1) + b"/"
_SIGNED = _INT.pack(len(SIGNATURE)) + SIGNATURE  # the signature as a ustring
_SEAL_SIZE = 8 + len(_END_PATH)  # Adler32 as a long, then "/"
_MAX_FIELD = 1 << 30  # no length in a snapshot comes near this
_MAX_COUNT = 1 << 28


class SnapStreamError(ValueError):
    """Bytes after a SNAP that are not a serialized tree and signature."""


def stream_of(snapshot: bytes) -> bytes:
    """What a leader writes after the SNAP packet, from snapshot file bytes."""
    reader = SnapStreamReader(signed=False)
    end = reader.feed(snapshot, _HEADER_SIZE)
    if end is None:
        raise SnapStreamError("snapshot ends before its node list does")
    return bytes(snapshot[_HEADER_SIZE:end]) + _SIGNED


def stream_head(head: bytes) -> bytes:
    """The stream's start (sessions, ACL map) from a ``SnapshotMaker``'s head."""
    return head[_HEADER_SIZE:]


def stream_tail() -> bytes:
    """What follows the last node: the end marker, then the signature."""
    return _END_PATH + _SIGNED


def snapshot_of(stream: bytes | bytearray) -> bytes:
    """Snapshot file bytes from a SNAP stream (signature included, as received)."""
    body = bytes(stream[:len(stream) - 4 - len(SIGNATURE)])
    head = S.FileHeader(SNAP_MAGIC, VERSION, -1).encode() + body
    return head + _LONG.pack(zlib.adler32(head)) + _END_PATH


class SnapStreamReader:
    """Walks a SNAP stream in a growing buffer. ``feed(buf, start)``: ``buf``
    holds the stream from ``start`` on (the same start every call, more bytes
    each time); returns the offset just past the stream's end, or None while
    it is incomplete. ``signed=False`` reads up to the end of the nodes (a
    snapshot file's body) and expects no signature."""

    def __init__(self, signed: bool = True) -> None:
        self.signed = signed
        self.pos = 0  # how far from ``start`` whole items were read
        self.phase = "sessions"
        self.left = -1  # items left in the current count (-1: count not read yet)
        self.acl_items = 0  # ACLs left in the current ACL map entry
        self.done = False

    def feed(self, buf: bytes | bytearray, start: int = 0) -> int | None:
        while not self.done:
            if self.phase == "nodes":
                # Almost all of a stream: walked in one tight loop, not a call per item.
                self.pos = self._walk_nodes(buf, start + self.pos) - start
                if self.phase == "nodes":
                    return None
                continue
            step = _PHASES[self.phase](self, buf, start + self.pos)
            if step is None:
                return None
            self.pos += step
        return start + self.pos

    def _walk_nodes(self, buf: bytes | bytearray, at: int) -> int:
        """Past every whole node from ``at``; the phase moves on at the end marker."""
        size = len(buf)
        unpack = _INT.unpack_from
        tail = _NODE_TAIL
        while size >= at + 4:
            (n,) = unpack(buf, at)
            if n == 1 and size >= at + 5 and buf[at + 4] == 0x2F:  # the ustring "/"
                self.phase = "signature"
                if not self.signed:
                    self.done = True
                return at + 5
            if not 0 <= n <= _MAX_FIELD:
                raise SnapStreamError(f"path length {n}")
            data_at = at + 4 + n
            if size < data_at + 4:
                break
            (d,) = unpack(buf, data_at)
            if not -1 <= d <= _MAX_FIELD:
                raise SnapStreamError(f"node data length {d}")
            end = data_at + 4 + max(d, 0) + tail
            if size < end:
                break
            at = end
        return at

    # -- one item per call: its size, or None if it is not all there yet -----------

    def _sessions(self, buf: bytes | bytearray, at: int) -> int | None:
        if self.left < 0:
            return self._count(buf, at)
        if self.left == 0:
            self.phase, self.left = "acls", -1
            return 0
        if len(buf) < at + _SESSION_SIZE:
            return None
        self.left -= 1
        return _SESSION_SIZE

    def _acls(self, buf: bytes | bytearray, at: int) -> int | None:
        if self.left < 0:
            return self._count(buf, at)
        if self.acl_items > 0:
            return self._acl(buf, at)
        if self.left == 0:
            self.phase = "nodes"
            return 0
        if len(buf) < at + 12:
            return None
        (n,) = _INT.unpack_from(buf, at + 8)
        if not -1 <= n <= _MAX_COUNT:
            raise SnapStreamError(f"ACL list of {n} entries")
        self.left -= 1
        self.acl_items = max(n, 0)
        return 12

    def _acl(self, buf: bytes | bytearray, at: int) -> int | None:
        end = _field_end(buf, at + 4, "ACL scheme")  # int perms, then Id(scheme, id)
        end = end if end is None else _field_end(buf, end, "ACL id")
        if end is None:
            return None
        self.acl_items -= 1
        return end - at

    def _nodes(self, buf: bytes | bytearray, at: int) -> int | None:
        path_end = _field_end(buf, at, "path")
        if path_end is None:
            return None
        if buf[at:path_end] == _END_PATH:
            self.phase = "signature"
            if not self.signed:
                self.done = True
            return path_end - at
        data_end = _field_end(buf, path_end, "node data")
        if data_end is None or len(buf) < data_end + _NODE_TAIL:
            return None
        return data_end + _NODE_TAIL - at

    def _signature(self, buf: bytes | bytearray, at: int) -> int | None:
        end = _field_end(buf, at, "signature")
        if end is None:
            return None
        if bytes(buf[at + 4:end]) != SIGNATURE:
            raise SnapStreamError(f"missing signature, got {bytes(buf[at + 4:end])[:32]!r}")
        self.done = True
        return end - at

    def _count(self, buf: bytes | bytearray, at: int) -> int | None:
        if len(buf) < at + 4:
            return None
        (n,) = _INT.unpack_from(buf, at)
        if not 0 <= n <= _MAX_COUNT:
            raise SnapStreamError(f"{self.phase} count {n}")
        self.left = n
        return 4


_PHASES = {
    "sessions": SnapStreamReader._sessions,
    "acls": SnapStreamReader._acls,
    "nodes": SnapStreamReader._nodes,
    "signature": SnapStreamReader._signature,
}


def _field_end(buf: bytes | bytearray, at: int, what: str) -> int | None:
    """End of a length-prefixed field (-1: null) at ``at``; None if not all here."""
    if len(buf) < at + 4:
        return None
    (n,) = _INT.unpack_from(buf, at)
    if not -1 <= n <= _MAX_FIELD:
        raise SnapStreamError(f"{what} length {n}")
    end = at + 4 + max(n, 0)
    return end if len(buf) >= end else None
