"""The tree digest: Apache ZooKeeper's values, prep == apply == from scratch, the files.

``data/reference_digests.json`` is what Apache ZooKeeper 3.8 wrote for
``compat_tests/digest_workload.py`` (``compat_tests/record_digests.py``
regenerates it): its txn log entries, each with the TxnDigest its
PrepRequestProcessor computed, its ``hash`` output (its DataTree's digest at
zxids 0x80 and 0x100) and the snapshot it wrote when started again (the
trailer is its DataTree's digest of the loaded tree).
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tree import OPEN, Env
from zk_harness import make_core

from zkpy.admin import fourletter, monitor
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.net.adminserver import AdminContext, run_command
from zkpy.server.modes import Mode
from zkpy.storage.formats import decode_entry, encode_txn
from zkpy.storage.recovery import recover
from zkpy.storage.snapshot import (
    SnapshotInvalid,
    SnapshotMaker,
    load_snapshot,
    parse_snapshot,
    snapshot_bytes,
    write_tree,
)
from zkpy.storage.txnlog import LogWriter
from zkpy.tree import digest
from zkpy.tree.datatree import DataTree

REF = json.loads((Path(__file__).parent / "data" / "reference_digests.json").read_text())
ENTRIES = [base64.b64decode(e) for e in REF["entries"]]
SNAP = base64.b64decode(REF["snapshot"]["data"])
SNAP_ZXID = REF["snapshot"]["zxid"]


@pytest.fixture
def digests_off() -> Iterator[None]:
    digest.set_enabled(False)
    try:
        yield
    finally:
        digest.set_enabled(True)


def _trailer(blob: bytes) -> tuple[int, int, int]:
    """(zxid, version, digest) of a snapshot's ZxidDigest (before the second seal)."""
    return struct.unpack_from(">qiq", blob, len(blob) - 13 - 20)


# -- Apache ZooKeeper's own values --------------------------------------------------


def test_every_txn_digest_zookeeper_wrote_is_the_digest_of_our_tree() -> None:
    tree = DataTree()
    checked = 0
    for entry in ENTRIES:
        hdr, txn, dg = decode_entry(entry)
        tree.apply(hdr, txn, dg)
        if dg is None:
            # ZooKeeper's failed writes carry no digest (its ErrorTxn of create /d).
            assert hdr.type == Op.error
            continue
        assert dg.version == digest.DIGEST_VERSION
        assert tree.digest == dg.treeDigest, f"zxid 0x{hdr.zxid:x} type {hdr.type}"
        checked += 1
    assert checked == len(ENTRIES) - 1 and tree.digests.mismatches == 0
    assert tree.digest == digest.recompute(tree.nodes)
    # The first txn (createSession) leaves a fresh tree alone: its digest is ours.
    assert decode_entry(ENTRIES[0])[2].treeDigest == DataTree().digest


def test_hash_history_matches_zookeepers_hash_command() -> None:
    tree = DataTree()
    for entry in ENTRIES:
        tree.apply(*decode_entry(entry))
    lines = "".join(f"{z:x}: {d}\n" for z, d in tree.digests.history)
    assert lines == REF["hash"] and len(tree.digests.history) == 2


def test_zookeepers_snapshot_loads_with_its_digest_checked() -> None:
    tree, sessions = parse_snapshot(SNAP, SNAP_ZXID)
    zxid, version, value = _trailer(SNAP)
    assert (zxid, version) == (SNAP_ZXID, 2)
    assert tree.digest == value and tree.digests.target is None
    assert tree.digests.mismatches == 0
    replayed = DataTree()
    for entry in ENTRIES:
        replayed.apply(*decode_entry(entry))
    assert replayed.digest == value
    # And zkpy's snapshot of the same tree ends with the same trailer.
    assert _trailer(snapshot_bytes(replayed, {}))[2] == value


def test_log_entries_reencode_to_zookeepers_bytes() -> None:
    for entry in ENTRIES:
        assert encode_txn(*decode_entry(entry)) == entry


def test_node_digest_details() -> None:
    # The root is "" (so "/" and "" agree), null and empty data are the same,
    # /zookeeper counts and what is under it does not.
    stat = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    assert digest.node_digest("/", b"", *stat) == digest.node_digest("", None, *stat)
    assert digest.node_digest("/zookeeper/quota", b"x", *stat) == 0
    assert digest.node_digest("/zookeeper", b"x", *stat) != 0
    packed = struct.pack(">qqqqqiiiq", *stat)
    assert digest.node_digest("/a", b"xy", *stat) == zlib.crc32(b"/axy" + packed)
    assert digest.as_long((1 << 64) - 1) == -1 and digest.as_long(5) == 5


def test_enabled_property_is_read_as_java_reads_it() -> None:
    assert digest.enabled_in({})
    assert digest.enabled_in({"zookeeper.digest.enabled": "TRUE"})
    assert not digest.enabled_in({"zookeeper.digest.enabled": "false"})
    assert not digest.enabled_in({"zookeeper.digest.enabled": "yes"})


# -- prep's prediction, apply's upkeep, the from-scratch sum ---------------------------

_NAMES = st.sampled_from(["/a", "/b", "/a/x", "/a/y", "/b/z", "/a/x/q", "/\u00e9"])
_OPS = st.lists(st.tuples(
    st.sampled_from(["create", "eph", "seq", "container", "ttl", "set", "acl", "delete",
                     "multi", "close", "setroot", "quota"]),
    _NAMES, st.binary(max_size=40), st.booleans()), min_size=1, max_size=40)


def _request(kind: str, path: str, data: bytes) -> tuple[int, Any]:
    if kind in ("create", "eph", "seq", "container"):
        flags = {"create": 0, "eph": 1, "seq": 2, "container": 4}[kind]
        op = Op.createContainer if kind == "container" else Op.create
        return op, S.CreateRequest(path, data, OPEN, flags)
    if kind == "ttl":
        return Op.createTTL, S.CreateTTLRequest(path, data, OPEN, 5, 1000)
    if kind == "set":
        return Op.setData, S.SetDataRequest(path, data, -1)
    if kind == "setroot":
        return Op.setData, S.SetDataRequest("/", data, -1)
    if kind == "acl":
        return Op.setACL, S.SetACLRequest(path, OPEN, -1)
    if kind == "delete":
        return Op.delete, S.DeleteRequest(path, -1)
    if kind == "quota":
        return Op.create, S.CreateRequest("/zookeeper/quota" + path, data, OPEN, 0)
    if kind == "close":
        return Op.closeSession, None
    return Op.multi, [(Op.create, S.CreateRequest(path + "m", data, OPEN, 0)),
                      (Op.setData, S.SetDataRequest(path, data, -1))]


@settings(max_examples=150, deadline=None)
@given(_OPS, st.integers(min_value=1, max_value=4))
def test_prep_digest_equals_applied_equals_recomputed(ops: Any, window: int) -> None:
    """Requests prepared up to ``window`` ahead of their apply (the future state)."""
    env = Env(extended=True)
    in_flight: list[Any] = []
    for kind, path, data, other in ops:
        op, body = _request(kind, path, data)
        in_flight.append(env.prepare(op, body, sid=0x200 if other else 0x100))
        while len(in_flight) >= window:
            req = in_flight.pop(0)
            env.apply(req)
            if req.digest is not None:
                assert req.digest.treeDigest == env.tree.digest
    for req in in_flight:
        env.apply(req)
    tree = env.tree
    assert tree.digests.mismatches == 0
    assert tree.digest == digest.recompute(tree.nodes)
    again, _ = parse_snapshot(snapshot_bytes(tree, {}), tree.last_zxid)
    assert again.digest == tree.digest and again.digests.mismatches == 0


def test_the_tree_carries_on_from_the_crc_prep_noted_for_the_same_data() -> None:
    """What prep computed of a node's path and data (CrcMemo) is what the tree
    continues from when it applies that very data object, and only then."""
    env = Env()
    env.create("/a", b"old")
    data = b"v" * 1024
    req = env.prepare(Op.setData, S.SetDataRequest("/a", data, -1))
    memo = env.tree.crc_memo
    assert memo.by_path["/a"] == (data, zlib.crc32(data, zlib.crc32(b"/a")))
    # Plant a wrong CRC for that object: the applied digest follows it, so the
    # noted CRC is what the tree used (and the check says the digests differ).
    memo.by_path["/a"] = (data, 12345)
    env.tree.apply(req.hdr, req.txn, req.digest)
    env.prep.applied(req.hdr.zxid)
    assert "/a" not in memo.by_path
    assert env.tree.digest != digest.recompute(env.tree.nodes)
    assert env.tree.digests.mismatches == 1

    env = Env()
    env.create("/a", b"old")
    req = env.prepare(Op.setData, S.SetDataRequest("/a", data, -1))
    # An equal but different object is not taken: the digest is computed whole.
    equal = bytes(bytearray(data))
    assert equal == data and equal is not data
    env.tree.crc_memo.by_path["/a"] = (equal, 12345)
    env.tree.apply(req.hdr, req.txn, req.digest)
    assert env.tree.digest == digest.recompute(env.tree.nodes)
    assert env.tree.digests.mismatches == 0


def test_crc_memo_keeps_nothing_once_nothing_is_in_flight() -> None:
    env = Env()
    env.create("/a")
    # A write whose apply never consults its entry (the node is gone by then).
    first = env.prepare(Op.setData, S.SetDataRequest("/a", b"x", -1))
    gone = env.prepare(Op.delete, S.DeleteRequest("/a", -1))
    assert "/a" in env.tree.crc_memo.by_path
    env.apply(first)
    env.apply(gone)
    assert env.tree.crc_memo.by_path == {}
    memo = digest.CrcMemo(limit=2)
    for path in ("/a", "/b", "/c"):
        memo.note(path, b"", 1)
    assert list(memo.by_path) == ["/c"]  # full: dropped what it held
    assert memo.take("/c", b"x") == -1 and memo.take("/nope", b"") == -1


def test_crc_memo_digest_is_node_digest_and_notes_what_the_tree_can_take() -> None:
    memo = digest.CrcMemo()
    data = b"v" * 3000
    stat = (5, 6, 7, 1000, 2000, 3, 4, 1, 0)
    assert memo.digest("/a", data, *stat) == digest.node_digest("/a", data, *stat) != 0
    assert memo.take("/a", data) == digest.path_data_crc("/a", data)
    # Under /zookeeper/ a node's digest is 0, and nothing is noted for it.
    assert memo.digest("/zookeeper/config", data, *stat) == 0
    assert memo.by_path == {}


def test_failed_writes_carry_no_digest_and_failed_multis_the_current_one() -> None:
    env = Env()
    env.create("/a")
    before = env.tree.digest
    req = env.prepare(Op.create, S.CreateRequest("/a", b"", OPEN, 0))
    assert req.hdr.type == Op.error and req.digest is None
    env.apply(req)
    req = env.prepare(Op.multi, [(Op.create, S.CreateRequest("/b", b"", OPEN, 0)),
                                 (Op.delete, S.DeleteRequest("/nope", -1))])
    assert req.hdr.type == Op.multi and req.digest.treeDigest == before
    assert env.apply(req).err != 0 and env.tree.digest == before


def test_a_replayed_create_that_finds_its_node_moves_the_parent_as_zookeeper() -> None:
    env = Env()
    env.create("/p")
    first = env.prepare(Op.create, S.CreateRequest("/p/c", b"", OPEN, 0))
    env.apply(first)
    hdr = S.TxnHeader(1, 1, first.hdr.zxid + 5, 1, Op.create)
    parent = env.tree.get("/p")
    rc = env.tree.apply(hdr, S.CreateTxn("/p/c", b"", OPEN, False, parent.ccount + 3))
    assert rc.err == -110
    assert parent.ccount == 4 and parent.pzxid == hdr.zxid
    assert env.tree.digest == digest.recompute(env.tree.nodes)


# -- mismatches ----------------------------------------------------------------------------


def test_a_wrong_txn_digest_is_counted_logged_and_applied(caplog: Any) -> None:
    env = Env()
    req = env.prepare(Op.create, S.CreateRequest("/a", b"x", OPEN, 0))
    seen: list[int] = []
    env.tree.digests.on_mismatch.append(seen.append)
    wrong = S.TxnDigest(2, req.digest.treeDigest + 1)
    with caplog.at_level(logging.INFO, "zkpy.digest"):
        env.tree.apply(req.hdr, req.txn, wrong)
    assert env.tree.get("/a") is not None  # ZooKeeper carries on
    assert env.tree.digests.mismatches == 1 and seen == [req.hdr.zxid]
    assert "First digest mismatch" in caplog.text
    # Another digest version is not compared.
    req = env.prepare(Op.setData, S.SetDataRequest("/a", b"y", -1))
    env.tree.apply(req.hdr, req.txn, S.TxnDigest(1, 0))
    assert env.tree.digests.mismatches == 1


def test_mntr_and_hash_report_the_tree_digest() -> None:
    core = make_core(four_letter_words=frozenset({"*"}))
    env = Env()
    core.tree, core.prep.tree = env.tree, env.tree
    env.create("/n")
    for i in range(130):
        env.set("/n", b"%d" % i)
    assert fourletter.run(core, "hash", None) == f"80: {env.tree.digests.history[0][1]}\n"
    values = dict(monitor.monitor_values(core))
    assert values["digest_mismatches_count"] == 0
    req = env.prepare(Op.setData, S.SetDataRequest("/n", b"z", -1))
    env.tree.apply(req.hdr, req.txn, S.TxnDigest(2, 12345))
    assert dict(monitor.monitor_values(core))["digest_mismatches_count"] == 1
    # The AdminServer's hash command, in ZooKeeper's JSON shape.
    ctx = AdminContext(core, clock=lambda: core.now)
    assert run_command(ctx, "hash") == {
        "digests": [{"zxid": 128, "digest": env.tree.digests.history[0][1], "digest_version": 2}],
        "command": "hash", "error": None}
    # A new tree (a SNAP, a restore) keeps the server's count, as ServerMetrics does.
    core.restore(DataTree(), {}, core.now)
    assert dict(monitor.monitor_values(core))["digest_mismatches_count"] == 1
    # Not serving (a quorum member without a leader): DigestCommand says so.
    core.become(Mode.NOT_SERVING, "a test")
    assert fourletter.run(core, "hash", None) == fourletter.NOT_SERVING


@pytest.mark.parametrize(("cfg", "props", "want"), [
    ("", {}, True),
    ("digest.enabled=false\n", {}, False),
    ("", {"zookeeper.digest.enabled": "false"}, False),
    ("digest.enabled=true\n", {"zookeeper.digest.enabled": "false"}, True),  # zoo.cfg wins
])
def test_start_up_reads_digest_enabled_as_zookeeper(tmp_path: Path, cfg: str, props: Any,
                                                    want: bool) -> None:
    from zkpy.__main__ import _digests
    from zkpy.config import load_config

    path = tmp_path / "zoo.cfg"
    path.write_text(f"dataDir={tmp_path}\nclientPort=2181\n{cfg}")
    try:
        _digests(load_config(str(path), props))
        assert digest.enabled() is want
        assert DataTree().digest_on is want
    finally:
        digest.set_enabled(True)


# -- snapshots and logs on disk ------------------------------------------------------------


def _tree_with(n: int) -> Env:
    env = Env()
    env.create("/s", b"s")
    for i in range(n):
        env.create(f"/s/{i}", b"%d" % i)
    return env


def test_snapshot_trailer_round_trip_and_damage(tmp_path: Path, caplog: Any) -> None:
    env = _tree_with(3)
    blob = snapshot_bytes(env.tree, {})
    assert _trailer(blob) == (env.tree.last_zxid, 2, env.tree.digest)
    # Without the trailer (an older snapshot): a warning, and it loads.
    plain_end = len(blob) - 13 - 20
    with caplog.at_level(logging.WARNING):
        tree, _ = parse_snapshot(blob[:plain_end], env.tree.last_zxid)
    assert "Got EOF exception while reading the digest" in caplog.text
    assert tree.digest == env.tree.digest
    # A damaged second seal: the snapshot is invalid (FileSnap: "CRC corruption").
    bad = bytearray(blob)
    bad[plain_end + 3] ^= 0xFF
    with pytest.raises(SnapshotInvalid):
        parse_snapshot(bytes(bad), env.tree.last_zxid)
    # A trailer naming the wrong digest at the snapshot's own zxid: a mismatch at load.
    zxid, version, value = _trailer(blob)
    body = blob[:plain_end]
    trailer = body[-13:] + struct.pack(">qiq", zxid, version, value + 1)
    forged = body + trailer[13:] + struct.pack(">q", zlib.adler32(trailer[13:], zlib.adler32(
        body))) + struct.pack(">i", 1) + b"/"
    tree, _ = parse_snapshot(forged, zxid)
    assert tree.digests.mismatches == 1


def test_fuzzy_snapshot_digest_is_checked_when_replay_reaches_it(tmp_path: Path) -> None:
    env = _tree_with(5)
    maker = SnapshotMaker(env.tree, {})
    maker.step(3)  # part of the tree now, the rest after more writes
    later = [env.prepare(Op.setData, S.SetDataRequest(f"/s/{i}", b"new", -1)) for i in range(4)]
    for req in later:
        env.apply(req)
    while not maker.step(3):
        pass
    assert maker.digest == (env.tree.last_zxid, 2, env.tree.digest)
    snap_dir = tmp_path / "version-2"
    snap_dir.mkdir()
    from zkpy.storage.snapshot import write_snapshot

    write_snapshot(str(snap_dir / f"snapshot.{maker.zxid:x}"), maker.head(), maker.chunks,
                   False, maker.digest)
    writer = LogWriter(str(snap_dir), 4096, False)
    for req in later:
        writer.append(req.hdr.zxid, encode_txn(req.hdr, req.txn, req.digest))
    writer.close()
    loaded, _, _ = load_snapshot(str(snap_dir / f"snapshot.{maker.zxid:x}"))
    assert loaded.digests.target == maker.digest  # fuzzy: waits for replay
    rec = recover(str(snap_dir), str(snap_dir))
    assert rec.tree.digests.target is None and rec.tree.digests.mismatches == 0
    assert rec.tree.digest == env.tree.digest


def test_recovery_of_zookeepers_snapshot(tmp_path: Path) -> None:
    (tmp_path / f"snapshot.{SNAP_ZXID:x}").write_bytes(SNAP)
    rec = recover(str(tmp_path), str(tmp_path))
    assert rec.tree.digests.mismatches == 0 and rec.tree.digest == _trailer(SNAP)[2]
    write_tree(str(tmp_path / "snapshot.ffff"), rec.tree, rec.sessions, False)
    assert _trailer((tmp_path / "snapshot.ffff").read_bytes())[2] == _trailer(SNAP)[2]


# -- zookeeper.digest.enabled=false ----------------------------------------------------------


def test_disabled_digests_write_and_read_none(digests_off: None) -> None:
    env = _tree_with(2)
    assert env.tree.digest == 0
    req = env.prepare(Op.create, S.CreateRequest("/t", b"", OPEN, 0))
    assert req.digest is None
    env.apply(req)
    blob = snapshot_bytes(env.tree, {})
    # No trailer: the file ends right after the first seal.
    (stored,) = struct.unpack_from(">q", blob, len(blob) - 13)
    assert zlib.adler32(blob[:-13]) == stored
    # ZooKeeper's entries load, their digests unread; its snapshot's trailer unread.
    hdr, _, dg = decode_entry(ENTRIES[1])
    assert dg is None
    tree, _ = parse_snapshot(SNAP, SNAP_ZXID)
    assert tree.digest == 0 and tree.digests.target is None
