"""Building a learner's tree from a leader's SNAP stream while it arrives.

A SNAP of a million znodes takes the leader seconds to stream, and parsing it
takes the learner as long again. ZooKeeper's learner deserializes the stream
as it reads it, so by the time the signature arrives its tree is built and
all that is left before it ACKs NEWLEADER is saving it. ``StreamBuilder``
does the same beside ``SnapStreamReader``: after each ``feed`` of the
reader, ``advance`` turns the nodes the reader has walked past (whole ones
only) into tree nodes, so the work is spread over the reactor turns the
stream takes, instead of one turn of many seconds once it has all come in
(that turn stopped the learner reading its leader, and with the store and
the parse after the stream it outlasted initLimit at a million znodes).

``finish`` gives the snapshot file's bytes as a ``BuiltSnapshot``: bytes
like any SNAP's (what is stored on disk), carrying the tree and sessions
built from them, which the replica installs instead of parsing the bytes
again, and which the disk need not verify (they were built from these very
bytes; the seal is computed over them). Pure: no I/O.
"""

from __future__ import annotations

import struct
from typing import Any

from zkpy.jute.codec import JuteError
from zkpy.storage.formats import snapshot_name
from zkpy.storage.snapshot import SnapshotInvalid, newest_change, read_head, read_nodes
from zkpy.storage.snapstream import SnapStreamReader, snapshot_of
from zkpy.tree.datatree import DataTree
from zkpy.tree.quota import setup_quota

__all__ = ["BuiltSnapshot", "StreamBuilder"]


class BuiltSnapshot(bytes):
    """A SNAP's snapshot file bytes with the state already built from them."""

    tree: DataTree
    sessions: dict[int, int]


class StreamBuilder:
    """Builds the tree of a SNAP stream held from offset 0 of a growing buffer,
    following a ``SnapStreamReader`` fed the same buffer."""

    def __init__(self, zxid: int) -> None:
        self.zxid = zxid
        self.tree = DataTree.empty()
        self.sessions: dict[int, int] = {}
        self.acls: dict[int, list[Any]] | None = None  # read once the nodes begin
        self.interned: dict[int, tuple[Any, ...]] = {}
        self.off = 0  # how far the buffer is built
        self.done = False

    def advance(self, buf: bytes | bytearray, reader: SnapStreamReader) -> None:
        """Build every whole node the reader has walked past (SnapshotInvalid if
        they do not make a tree: an unknown ACL id, a node without a parent)."""
        if self.done or reader.phase in ("sessions", "acls"):
            return
        upto = reader.pos  # whole items only: the end of a node, the marker or the signature
        try:
            if self.acls is None:
                self.sessions, self.acls, self.off = read_head(bytes(buf[:upto]), 0)
            if upto > self.off:
                # Whole nodes only (the reader's position is a node's end): a
                # copy, as node data must be bytes, and a bytearray grows.
                piece = bytes(buf[self.off:upto])
                used, self.done = read_nodes(piece, 0, self.tree, self.acls, self.interned)
                self.off += used
        except (JuteError, struct.error, IndexError, KeyError, UnicodeDecodeError) as e:
            raise SnapshotInvalid(f"{snapshot_name(self.zxid)}: {e}") from None

    def finish(self, stream: bytes | bytearray) -> BuiltSnapshot:
        """The whole stream (signature included) as snapshot bytes and its state."""
        if not self.done:
            raise SnapshotInvalid(f"{snapshot_name(self.zxid)}: the nodes did not end")
        tree = self.tree
        setup_quota(tree)  # as DataTree.deserialize: register the quotas
        tree.last_zxid = self.zxid
        # Streamed: fuzzy up to the newest change its nodes record (no trailer).
        tree.digests.fuzzy_until(newest_change(tree))
        built = BuiltSnapshot(snapshot_of(stream))
        built.tree, built.sessions = tree, self.sessions
        return built
