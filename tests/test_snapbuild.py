"""A learner builds its tree from a leader's SNAP stream as the bytes arrive
(``zkpy.storage.snapbuild``): the same state as parsing the whole snapshot,
whatever pieces the stream comes in, and a stream that is no tree refused."""

from __future__ import annotations

import struct

import pytest

from zkpy.jute import schema as S
from zkpy.storage import snapstream
from zkpy.storage.snapbuild import BuiltSnapshot, StreamBuilder
from zkpy.storage.snapshot import SnapshotInvalid, parse_snapshot, snapshot_bytes
from zkpy.storage.zabdisk import install_snapshot
from zkpy.tree.datatree import DataTree
from zkpy.zab import messages as m

OPEN = [S.ACL(31, S.Id("world", "anyone"))]


def _tree() -> tuple[DataTree, dict[int, int]]:
    """Znodes of every kind the builder indexes: plain, ephemeral, container,
    with data and without, under two ACLs, and a quota."""
    tree = DataTree()
    digest_acl = [S.ACL(1, S.Id("digest", "u:x"))]
    creates = [("/a", b"data", 0, OPEN), ("/a/e", b"", 0x55, digest_acl),
               ("/c", None, 0, OPEN), ("/big", b"x" * 5000, 0, OPEN),
               ("/zookeeper/quota/a", b"", 0, OPEN),
               ("/zookeeper/quota/a/zookeeper_limits", b"count=5,bytes=-1", 0, OPEN)]
    for i, (path, data, owner, acl) in enumerate(creates, 1):
        hdr = S.TxnHeader(0x55, i, m.make_zxid(1, i), i, 1)
        tree.apply(hdr, S.CreateTxn(path, data, acl, owner != 0, 0))
    for i in range(40):
        zxid = m.make_zxid(1, 100 + i)
        tree.apply(S.TxnHeader(0x55, 100 + i, zxid, 100 + i, 1),
                   S.CreateTxn(f"/a/n{i}", b"v%d" % i, OPEN, False, 0))
    return tree, {0x55: 7000, 0x66: 4000}


def _build(stream: bytes, zxid: int, chunk: int) -> BuiltSnapshot:
    reader = snapstream.SnapStreamReader()
    builder = StreamBuilder(zxid)
    buf = bytearray()
    for i in range(0, len(stream), chunk):
        buf += stream[i:i + chunk]
        end = reader.feed(buf)
        builder.advance(buf, reader)
        if end is not None:
            return builder.finish(buf[:end])
    raise AssertionError("the stream never ended")


@pytest.mark.parametrize("chunk", [1, 13, 4096, 1 << 20])
def test_the_tree_built_in_pieces_is_the_tree_parsed_whole(chunk: int) -> None:
    tree, sessions = _tree()
    zxid = tree.last_zxid
    stream = snapstream.stream_of(snapshot_bytes(tree, sessions))
    built = _build(stream, zxid, chunk)
    parsed, parsed_sessions = parse_snapshot(built, zxid, trailer=False)
    assert bytes(built) == snapstream.snapshot_of(stream)
    assert built.sessions == parsed_sessions == sessions
    got = built.tree
    assert got.nodes.keys() == tree.nodes.keys()
    for path, node in tree.nodes.items():
        mine = got.nodes[path]
        assert (mine.data, mine.acl, mine.stat(), mine.children) == \
            (node.data, node.acl, node.stat(), node.children), path
    assert got.ephemerals == {0x55: {"/a/e"}}
    assert got.digest == tree.digest != 0
    assert got.last_zxid == zxid
    assert got.quota.roots == tree.quota.roots == {"/a"}


def test_a_node_without_its_parent_is_refused_when_it_arrives() -> None:
    tree, sessions = _tree()
    stream = snapstream.stream_of(snapshot_bytes(tree, sessions))
    # The first node after the root: rename "/a" to "/q" (no such parent for "/a/..").
    at = stream.index(struct.pack(">i", 2) + b"/a")
    broken = stream[:at + 4] + b"/q" + stream[at + 6:]
    with pytest.raises(SnapshotInvalid, match="parent"):
        _build(broken, tree.last_zxid, 64)


def test_a_built_snapshot_is_stored_without_a_second_walk(tmp_path, monkeypatch) -> None:
    tree, sessions = _tree()
    stream = snapstream.stream_of(snapshot_bytes(tree, sessions))
    built = _build(stream, tree.last_zxid, 4096)
    import zkpy.storage.zabdisk as zabdisk

    def walked(blob: bytes, zxid: int) -> None:
        raise AssertionError("verified again")

    monkeypatch.setattr(zabdisk, "verify_snapshot", walked)
    path = install_snapshot(str(tmp_path), tree.last_zxid, built, fsync=False)
    with open(path, "rb") as f:
        assert f.read() == bytes(built)
    with pytest.raises(AssertionError, match="verified again"):
        install_snapshot(str(tmp_path), tree.last_zxid, bytes(built), fsync=False)
