"""A quorum member's disk and its wire framing: epochs, TRUNC, SNAP, split packets.

Real files in a temporary directory (``zkpy.storage.zabdisk``, read back by
``zkpy.storage.recovery.load``) and the
quorum-stream splitter (``zkpy.zab.messages.split_packet``), which must
accept any split of the byte stream and reject garbage with one error type.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkpy.jute import schema as S
from zkpy.jute.codec import decode
from zkpy.jute.protocol import Op
from zkpy.storage.formats import encode_txn
from zkpy.storage.recovery import RecoveryError, load, logged_after
from zkpy.storage.snapshot import SnapshotInvalid, snapshot_bytes
from zkpy.storage.txnlog import LogWriter
from zkpy.storage.zabdisk import (
    ACCEPTED_EPOCH,
    CURRENT_EPOCH,
    install_snapshot,
    truncate_log,
    write_epoch,
)
from zkpy.tree.datatree import DataTree
from zkpy.zab import messages as m


def _create(zxid: int, path: str) -> bytes:
    hdr = S.TxnHeader(7, 1, zxid, 0, Op.create)
    acl = [S.ACL(31, S.Id("world", "anyone"))]
    return encode_txn(hdr, S.CreateTxn(path, b"v", acl, False, 1))


def _log(directory: str, zxids: list[int], roll_before: set[int] = frozenset()) -> None:
    w = LogWriter(directory, 4096, True)
    for z in zxids:
        if z in roll_before:
            w.roll()
        w.append(z, _create(z, f"/n{z:x}"))
    w.sync()
    w.close()


def test_epochs_round_trip_and_default_to_the_last_zxids_epoch(tmp_path) -> None:
    d = str(tmp_path)
    _log(d, [(2 << 32) + 1])
    state = load(d, d)
    assert (state.accepted_epoch, state.current_epoch) == (2, 2)
    write_epoch(d, ACCEPTED_EPOCH, 5)
    write_epoch(d, CURRENT_EPOCH, 4)
    state = load(d, d)
    assert (state.accepted_epoch, state.current_epoch) == (5, 4)
    write_epoch(d, CURRENT_EPOCH, 6)
    with pytest.raises(RecoveryError, match="currentEpoch 6 is above acceptedEpoch 5"):
        load(d, d)
    with open(os.path.join(d, ACCEPTED_EPOCH), "w") as f:
        f.write("seven\n")
    with pytest.raises(RecoveryError, match="acceptedEpoch: 'seven' is not an epoch"):
        load(d, d)


def test_logged_txns_are_returned_not_applied(tmp_path) -> None:
    """Only the snapshot is loaded: the log is accepted history, which a leader
    may yet truncate, so nothing of it may be in the tree at start."""
    d = str(tmp_path)
    zxids = [(1 << 32) + i for i in range(1, 6)]
    _log(d, zxids)
    state = load(d, d)
    assert [z for z, _ in state.log] == zxids
    assert state.tree.get("/n100000001") is None and state.snapshot_zxid == 0


def test_truncate_drops_the_tail_across_files(tmp_path) -> None:
    d = str(tmp_path)
    e1 = [(1 << 32) + i for i in range(1, 6)]
    e2 = [(2 << 32) + i for i in range(1, 4)]
    _log(d, e1 + e2, roll_before={e1[3], e2[0]})  # three files: 1-3, 4-5, epoch 2
    assert truncate_log(d, e1[3]) == 4
    assert [z for z, _ in logged_after(d, 0)] == e1[:4]
    assert truncate_log(d, e1[3]) == 0
    assert truncate_log(d, 0) == 4
    assert logged_after(d, 0) == []


def test_a_stored_snap_is_the_start_state_and_garbage_is_refused(tmp_path) -> None:
    d = str(tmp_path)
    tree = DataTree()
    z = (3 << 32) + 9
    hdr = S.TxnHeader(0, 0, z, 0, Op.create)
    tree.apply(hdr, S.CreateTxn("/snapped", b"x", [S.ACL(31, S.Id("world", "anyone"))], False, 1))
    data = snapshot_bytes(tree, {0x1234: 6000})
    install_snapshot(d, z, data)
    _log(d, [z + 1])
    state = load(d, d)
    assert state.snapshot_zxid == z and state.tree.get("/snapped") is not None
    assert state.sessions == {0x1234: 6000} and [e for e, _ in state.log] == [z + 1]
    with pytest.raises(SnapshotInvalid):
        install_snapshot(d, z + 5, data[:len(data) // 2])
    assert not os.path.exists(os.path.join(d, f"snapshot.{z + 5:x}"))


# -- the quorum stream --------------------------------------------------------------


def test_split_packet_takes_any_split_of_the_stream() -> None:
    pkts = [m.packet(m.PROPOSAL, 5, b"abc"), m.packet(m.PING, 6),
            m.QuorumPacket(m.REQUEST, -1, b"r", [S.Id("ip", "127.0.0.1")])]
    stream = b"".join(p.encode() for p in pkts)
    rng = random.Random(1)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), 3))
        buf = bytearray()
        got = []
        for a, b in zip([0] + cuts, cuts + [len(stream)], strict=True):
            buf += stream[a:b]
            off = 0
            while (found := m.split_packet(buf, off)) is not None:
                pkt, off = found
                got.append(pkt)
            del buf[:off]
        assert got == pkts and not buf


def test_garbage_on_the_quorum_stream_raises_packet_error_only() -> None:
    rng = random.Random(2)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        try:
            m.split_packet(blob)
        except m.PacketError:
            pass
    with pytest.raises(m.PacketError, match="data length -5"):
        m.split_packet(b"\x00" * 12 + b"\xff\xff\xff\xfb")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20), st.integers(-(1 << 63), (1 << 63) - 1),
       st.one_of(st.none(), st.binary(max_size=64)),
       st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)),
                                     max_size=2)))
def test_the_fast_packet_codec_is_the_schema_codec(ptype: int, zxid: int, data: bytes | None,
                                                    auth: list[tuple[str, str]] | None) -> None:
    ids = None if auth is None else [S.Id(a, b) for a, b in auth]
    pkt = m.QuorumPacket(ptype, zxid, data, ids)
    wire = pkt.encode()
    assert m.encode_packet(pkt) == wire
    found = m.split_packet(wire + b"\x00", 0)
    assert found is not None and found == (pkt, len(wire))
    assert m.split_packet(wire[:-1], 0) is None  # one byte short: not a packet yet


def test_mutated_auth_ids_of_a_request_are_a_packet_error_or_a_packet() -> None:
    """A learner's REQUEST carries its session's auth ids; mutated ones (lengths,
    bytes that are not UTF-8, null strings) split as the schema decoder decodes
    them, or raise PacketError: never anything else."""
    wire = m.QuorumPacket(m.REQUEST, -1, b"req", [S.Id("ip", "127.0.0.1"),
                                                  S.Id("digest", "u:x")]).encode()
    rng = random.Random(3)
    for _ in range(3000):
        blob = bytearray(wire)
        for _ in range(rng.randint(1, 3)):
            blob[rng.randrange(23, len(blob))] = rng.choice((0x00, 0xFF, 0xC3, 0x80, 0x05))
        try:
            found = m.split_packet(bytes(blob), 0)
        except m.PacketError:
            continue
        if found is not None:
            pkt, end = found
            assert (pkt, end) == decode(S.QuorumPacket, bytes(blob), 0, end)


def test_requests_of_sessions_with_the_same_auth_ids_share_them_and_only_them() -> None:
    """The splitter remembers the Ids of auth bytes it has read (a bounded
    number of them): the same bytes give the same Ids, other bytes their own."""
    ids_a = [S.Id("ip", "127.0.0.1")]
    ids_b = [S.Id("ip", "127.0.0.2"), S.Id("digest", "u:x")]
    wires = [m.QuorumPacket(m.REQUEST, -1, b"r%d" % i, ids).encode()
             for i, ids in enumerate((ids_a, ids_b, ids_a, ids_b))]
    found = []
    for wire in wires:
        split = m.split_packet(wire, 0)
        assert split is not None and split[1] == len(wire)
        found.append(split[0])
    assert [p.authinfo for p in found] == [ids_a, ids_b, ids_a, ids_b]
    assert [p.data for p in found] == [b"r0", b"r1", b"r2", b"r3"]
    for i in range(m._KNOWN_IDS_MAX + 10):
        m.split_packet(m.QuorumPacket(m.REQUEST, -1, b"", [S.Id("ip", f"10.0.{i}")]).encode())
    assert len(m._KNOWN_IDS) <= m._KNOWN_IDS_MAX


def test_a_snapshot_is_verified_without_building_its_tree() -> None:
    from zkpy.storage.snapshot import parse_snapshot, verify_snapshot

    tree = DataTree()
    z = (3 << 32) + 9
    tree.apply(S.TxnHeader(0, 0, z, 0, Op.create),
               S.CreateTxn("/v", b"x" * 50, [S.ACL(31, S.Id("world", "anyone"))], False, 1))
    data = snapshot_bytes(tree, {0x1234: 6000})
    verify_snapshot(data, z)
    for broken in (data[:len(data) // 2], data[:40], b"ZKLG" + data[4:],
                   data[:60] + bytes([data[60] ^ 1]) + data[61:],
                   data[:-6] + bytes([data[-6] ^ 1]) + data[-5:]):  # the digest trailer's seal
        with pytest.raises(SnapshotInvalid):
            verify_snapshot(broken, z)
        with pytest.raises(SnapshotInvalid):  # what the installer would have met
            parse_snapshot(broken, z, trailer=None)
    verify_snapshot(data[:-30], z)  # no whole trailer: an older snapshot, as parse takes it
