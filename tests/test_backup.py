"""Consistent snapshots from fuzzy ones, and the AdminServer snapshot/restore rules."""

from __future__ import annotations

import pytest

from zkpy.auth.acl import AuthProviders, digest
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.storage import backup as B
from zkpy.storage.formats import encode_txn
from zkpy.storage.snapshot import SnapshotMaker, made_bytes, parse_snapshot, snapshot_bytes
from zkpy.tree.datatree import DataTree

OPEN = [S.ACL(31, S.Id("world", "anyone"))]


class Log:
    """Transactions applied to a live tree and kept as log entries."""

    def __init__(self, tree: DataTree) -> None:
        self.tree = tree
        self.entries: list[tuple[int, bytes]] = []

    def txn(self, op: int, body: object, session: int = 5) -> None:
        zxid = self.tree.last_zxid + 1
        hdr = S.TxnHeader(session, zxid, zxid, 1000 + zxid, op)
        self.tree.apply(hdr, body)
        self.entries.append((zxid, encode_txn(hdr, body)))

    def create(self, path: str, data: bytes = b"d") -> None:
        parent = self.tree.get(path.rsplit("/", 1)[0] or "/")
        assert parent is not None
        self.txn(Op.create, S.CreateTxn(path, data, OPEN, False, parent.ccount + 1))


def nodes(tree: DataTree) -> dict[str, tuple[object, ...]]:
    return {p: (n.data, n.acl, n.czxid, n.mzxid, n.version, n.ccount, n.pzxid,
                sorted(n.children or ())) for p, n in tree.nodes.items()}


def test_fuzzy_snapshot_plus_logged_txns_is_the_state_at_the_end() -> None:
    tree = DataTree()
    log = Log(tree)
    for i in range(50):
        log.create(f"/n{i:02}")
    maker = SnapshotMaker(tree, {5: 4000})
    start = maker.zxid
    done = False
    i = 0
    while not done:  # the walk and the writes interleave, a few nodes at a time
        done = maker.step(3)
        log.create(f"/new{i:03}")
        log.txn(Op.setData, S.SetDataTxn(f"/n{i % 50:02}", b"changed", 1 if i < 50 else 2))
        if i % 7 == 0 and tree.get(f"/n{(i + 25) % 50:02}") is not None:
            log.txn(Op.delete, S.DeleteTxn(f"/n{(i + 25) % 50:02}"))
        i += 1
    log.txn(Op.createSession, S.CreateSessionTxn(6000), session=77)
    end = tree.last_zxid
    fuzzy = made_bytes(maker)
    fuzzy_tree, _ = parse_snapshot(fuzzy, start)
    assert nodes(fuzzy_tree) != nodes(tree)  # the fuzzy file alone is no point in time
    blob = B.consistent_snapshot(fuzzy, start, log.entries, end)
    restored, sessions = parse_snapshot(blob, end)
    assert nodes(restored) == nodes(tree)
    assert sessions == {5: 4000, 77: 6000}
    with pytest.raises(B.BackupError, match="up to"):  # a missing tail is refused
        B.consistent_snapshot(fuzzy, start, log.entries[:-3], end)


def test_read_backup_accepts_a_zookeeper_39_stream_with_trailers() -> None:
    tree = DataTree()
    Log(tree).create("/a", b"x")
    blob = snapshot_bytes(tree, {})
    # 3.9: a ZxidDigest and lastProcessedZxid follow, each with its own seal.
    trailer = bytes(8 + 4 + 8) + bytes(8) + b"\x00\x00\x00\x01/" + bytes(8) + bytes(8) + \
        b"\x00\x00\x00\x01/"
    restored, _ = B.read_backup(blob + trailer)
    assert restored.get("/a").data == b"x"
    with pytest.raises(B.BackupError, match="not a ZooKeeper snapshot"):
        B.read_backup(b"garbage" * 10)


def test_rate_limiter_one_call_per_window_from_server_start() -> None:
    limit = B.RateLimiter(1, 300, now_ms=1000)
    assert limit.allow(1000) is True
    assert limit.allow(1200) is False
    assert limit.allow(1300) is False  # the window is (reset, reset + interval]
    assert limit.allow(1301) is True
    assert limit.allow(1400) is False


@pytest.mark.parametrize("header, status, error", [
    (None, 401, "Auth info is missing for the command"),
    ("kerberos x", 401, "Not authenticated"),
    ("digest", 401, "Not authenticated"),
    ("digest a b c", 401, "Not authenticated"),
    ("digest eve:pw", 403, "Not authorized"),
    ("ip", 403, "Not authorized"),
])
def test_refusals_as_zookeeper_39(header: str | None, status: int, error: str) -> None:
    acl = [S.ACL(31, S.Id("digest", digest("admin:pw"))), S.ACL(1, S.Id("world", "anyone"))]
    assert B.authorize(header, "10.0.0.1", AuthProviders(), acl) == (status, error)


def test_all_bits_may_come_from_different_acl_entries() -> None:
    providers = AuthProviders(super_digest=digest("root:x"))
    acl = [S.ACL(1 | 2 | 4, S.Id("ip", "10.0.0.0/8")), S.ACL(8 | 16, S.Id("digest",
                                                                          digest("a:b")))]
    assert B.authorize("ip", "10.1.2.3", providers, acl) == (403, "Not authorized")
    assert B.authorize("digest a:b", "10.1.2.3", providers, acl) == (403, "Not authorized")
    assert B.authorize("digest root:x", "192.0.2.1", providers, acl) is None  # super
    assert B.authorize("digest a:b", "10.1.2.3", providers, OPEN) is None
    assert B.authorize("digest eve:x", "1.2.3.4", providers, acl, skip_acl=True) is None


def test_install_backup_refuses_a_used_data_dir(tmp_path) -> None:
    tree = DataTree()
    Log(tree).create("/a")
    blob = snapshot_bytes(tree, {})
    path = B.install_backup(str(tmp_path), blob, 0x1)
    assert path.endswith("version-2/snapshot.1")
    assert B.backup_from_data_dir(str(tmp_path)) == (blob, 1)
    with pytest.raises(B.BackupError, match="fresh data directory"):
        B.install_backup(str(tmp_path), blob, 0x2)
    assert B.zxid_from_name("/x/snapshot.1a2b") == 0x1a2b and B.zxid_from_name("b.snap") is None
