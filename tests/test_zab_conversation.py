"""Zab's conversations packet by packet, as ZooKeeper 3.8 has them.

A mixed ensemble works only if a zkpy leader says to a ZooKeeper learner
exactly what a ZooKeeper leader would (LearnerHandler.run, syncFollower,
Leader.startForwarding) and a zkpy learner answers as Learner does
(registerWithLeader, syncWithLeader, Follower/Observer.processPacket). Each
test steps ``Peer`` objects by hand and reads the packets off their Readies;
the SNAP stream and its framing are checked against ZooKeeper's layout.
"""

from __future__ import annotations

import gc
import struct
import zlib
from typing import Any

import pytest
from test_zab_peer import VOTERS, _deliver, _elect, _establish, _peer, _take, _three
from twisted.internet.testing import MemoryReactorClock, StringTransport

from zkpy.jute import schema as S
from zkpy.net.peerlinks import QuorumLinks
from zkpy.storage import snapstream
from zkpy.storage.snapbuild import BuiltSnapshot
from zkpy.storage.snapshot import SnapshotMaker, parse_snapshot, snapshot_bytes
from zkpy.tree.datatree import DataTree
from zkpy.zab import membership
from zkpy.zab import messages as m
from zkpy.zab.events import DiskState, Message, Persisted, Propose, Ready, Revalidate, Tick
from zkpy.zab.peer import Peer

E1 = m.make_zxid(1, 0)


def _history(n: int, epoch: int = 1) -> list[tuple[int, bytes]]:
    return [(m.make_zxid(epoch, i), b"t%d" % i) for i in range(1, n + 1)]


def _to(r: Ready, dest: int) -> list[m.QuorumPacket]:
    return [pkt for d, pkt in list(r.send) + list(r.send_after_persist) if d == dest]


# -- the leader's side ------------------------------------------------------------------


def test_no_ping_reaches_a_learner_before_its_sync() -> None:
    """Learner.syncWithLeader exits (code 13) on a PING where DIFF/TRUNC/SNAP belongs."""
    leader, f2, _ = _three({1: DiskState(1, 1, 0, _history(2))})
    seen: list[int] = []
    for _ in range(8):
        leader.step(Tick(), 0)  # a tick between every two packets of the handshake
        rl = _take(leader)
        seen += [p.type for p in _to(rl, 2)]
        _deliver(rl, 1, leader)
        _deliver(rl, 1, f2)
        _deliver(_take(f2), 2, leader)
    assert m.DIFF in seen and m.PING in seen
    assert m.PING not in seen[:seen.index(m.DIFF)]


def test_diff_carries_proposal_commit_pairs_then_newleader_with_the_membership() -> None:
    config = membership.QuorumConfig({i: membership.parse_server_address(
        f"127.0.0.1:{2000 + i}:{3000 + i}") for i in (1, 2, 3)})
    leader = Peer(1, VOTERS, DiskState(1, 1, 0, _history(2)), lambda: b"", config=config)
    leader.reconfig_enabled = False
    f2 = _peer(2)
    _elect(leader, 1)
    _elect(f2, 1)
    seen: list[str] = []
    for _ in range(6):
        rl = _take(leader)
        seen += [m.describe(p) for p in _to(rl, 2)]
        newleader = [p for p in _to(rl, 2) if p.type == m.NEWLEADER]
        if newleader:
            assert newleader[0].data == config.text().encode()
        _deliver(rl, 1, leader)
        _deliver(rl, 1, f2)
        _deliver(_take(f2), 2, leader)
    assert seen == ["LEADERINFO(0x200000000)", "DIFF(0x100000002)",
                    "PROPOSAL(0x100000001)", "COMMIT(0x100000001)",
                    "PROPOSAL(0x100000002)", "COMMIT(0x100000002)",
                    "NEWLEADER(0x200000000)", "UPTODATE(0x-1)"]
    assert f2.applied == m.make_zxid(1, 2)


def test_outstanding_proposals_go_to_followers_alone_and_observers_get_informs() -> None:
    leader, f2, f3 = _three()
    _establish(leader, f2)  # f3 has not connected yet
    _take(f3)
    z = leader.next_zxid
    leader.step(Propose(b"tx", z), 0)
    _take(leader)  # f2 got the PROPOSAL; nobody acked it yet
    # 3 joins as an observer while the proposal is outstanding.
    obs = m.follower_info(3, leader.current_epoch, observer=True)
    leader.step(Message(3, obs), 0)
    leader.step(Message(3, m.packet(m.ACKEPOCH, 0, m.int_data(0))), 0)
    stream = [m.describe(p) for p in _to(_take(leader), 3)]
    assert stream[0] == "DIFF(0x0)"  # what the leader has committed
    assert f"PROPOSAL(0x{z:x})" not in stream  # Leader.startForwarding: participants only
    leader.step(Message(1, m.packet(m.ACK, z)), 0)
    leader.step(Message(2, m.packet(m.ACK, z)), 0)
    r = _take(leader)
    assert [m.describe(p) for p in _to(r, 2)] == [f"COMMIT(0x{z:x})"]
    assert [(p.type, p.data) for p in _to(r, 3)] == [(m.INFORM, b"tx")]  # while it syncs


def test_a_learners_ack_after_uptodate_is_ignored() -> None:
    leader, f2, f3 = _three()
    _establish(leader, f2, f3)
    leader.step(Message(2, m.packet(m.ACK, m.make_zxid(leader.current_epoch, 0))), 0)
    r = _take(leader)
    assert 2 not in r.disconnect and 2 in leader.leading.learners


def test_revalidate_is_answered_with_the_session_and_whether_it_lives() -> None:
    leader, f2, f3 = _three()
    _establish(leader, f2, f3)
    asked = []
    leader.revalidate = lambda learner, sid, timeout: asked.append((learner, sid, timeout)) or True
    leader.step(Message(2, m.revalidate_request(0x1234, 9000)), 0)
    (answer,) = _to(_take(leader), 2)
    assert asked == [(2, 0x1234, 9000)]
    # Leader.revalidateSession: the same packet back, data = long id + boolean.
    assert answer.encode() == m.QuorumPacket(m.REVALIDATE, -1, struct.pack(">q?", 0x1234, True),
                                             None).encode()
    f2.step(Message(1, answer), 0)
    assert _take(f2).revalidated == [(0x1234, True)]


def test_a_reconfig_commits_as_commit_and_activate_naming_the_leader() -> None:
    servers = {i: membership.parse_server_address(f"127.0.0.1:{2000 + i}:{3000 + i}")
               for i in (1, 2, 3)}
    configs = [membership.QuorumConfig(dict(servers), 0x100000000) for _ in (1, 2, 3)]
    peers = [Peer(i, VOTERS, DiskState(), lambda: b"", config=c)
             for i, c in zip((1, 2, 3), configs, strict=True)]
    leader, f2, f3 = peers
    for p in peers:
        _elect(p, 1)
    _establish(leader, f2, f3)
    smaller = {1: servers[1], 2: servers[2]}
    text = membership.QuorumConfig(smaller, 0).text().encode()
    txn = _reconfig_txn(leader.next_zxid, text)
    z = leader.next_zxid
    leader.step(Propose(txn, z), 0)
    leader.step(Persisted(z), 0)  # the leader's own disk holds it
    for _ in range(3):
        rl = _take(leader)
        _deliver(rl, 1, leader)
        for f in (f2, f3):
            _deliver(rl, 1, f)
            _deliver(_take(f), f.my_id, leader)
        activate = [p for p in _to(rl, 2) if p.type == m.COMMITANDACTIVATE]
        if activate:
            assert activate[0].zxid == z and m.designated_leader(activate[0])[0] == 1
            break
    else:
        raise AssertionError("no COMMITANDACTIVATE")
    assert leader.config.voters == {1, 2} and f2.config.voters == {1, 2}


def test_removing_the_leader_hands_over_to_the_designated_one_without_an_election() -> None:
    """Leader.getDesignatedLeader / QuorumPeer.updateServerState: the removed
    leader names a voter of the new membership; everyone goes to it directly."""
    servers = {i: membership.parse_server_address(f"127.0.0.1:{2000 + i}:{3000 + i}")
               for i in (1, 2, 3)}
    peers = [Peer(i, VOTERS, DiskState(), lambda: b"",
                  config=membership.QuorumConfig(dict(servers), 0x100000000)) for i in (1, 2, 3)]
    leader, f2, f3 = peers
    for p in peers:
        _elect(p, 1)
    _establish(leader, f2, f3)
    text = membership.QuorumConfig({2: servers[2], 3: servers[3]}, 0).text().encode()
    z = leader.next_zxid
    leader.step(Propose(_reconfig_txn(z, text), z), 0)
    leader.step(Persisted(z), 0)  # the leader's own disk holds it
    activate = None
    for _ in range(3):
        rl = _take(leader)
        _deliver(rl, 1, leader)
        for f in (f2, f3):
            _deliver(rl, 1, f)
            _deliver(_take(f), f.my_id, leader)
        activate = activate or next((p for p in _to(rl, 2) if p.type == m.COMMITANDACTIVATE),
                                    None)
    assert activate is not None and m.designated_leader(activate)[0] == 3
    for p in peers:
        p.step(Tick(), 0)  # the step after: the handover
    assert f3.leading is not None
    assert f2.following is not None and f2.following.leader == 3
    assert leader.following is not None and leader.following.leader == 3
    assert all(not _take(p).votes for p in peers)  # no election


def _reconfig_txn(zxid: int, data: bytes) -> bytes:
    hdr = S.TxnHeader(0, 1, zxid, 0, 16)  # OpCode.reconfig
    return hdr.encode() + S.SetDataTxn("/zookeeper/config", data, 1).encode()


# -- the learner's side ------------------------------------------------------------------


def _syncing_follower(history: list[tuple[int, bytes]] | None = None) -> Peer:
    f = _peer(2, DiskState(1, 1, 0, history or []))
    _elect(f, 1)
    _take(f)
    f.step(Message(1, m.packet(m.LEADERINFO, m.make_zxid(2, 0), m.int_data(m.PROTOCOL_VERSION))), 0)
    _take(f)
    return f


def test_learner_is_silent_during_sync_then_acks_as_zookeeper_does() -> None:
    f = _syncing_follower()
    f.step(Message(1, m.packet(m.DIFF, 0)), 0)
    f.step(Message(1, m.packet(m.PROPOSAL, m.make_zxid(1, 1), b"a")), 0)
    f.step(Message(1, m.packet(m.COMMIT, m.make_zxid(1, 1))), 0)
    f.step(Message(1, m.packet(m.PROPOSAL, m.make_zxid(1, 2), b"b")), 0)  # outstanding
    f.step(Message(1, m.packet(m.PING, m.make_zxid(1, 2))), 0)
    assert _to(_take(f), 1) == []  # no PING reply: the LearnerHandler wants an ACK first
    f.step(Message(1, m.packet(m.NEWLEADER, m.make_zxid(2, 0))), 0)
    f.step(Message(1, m.packet(m.PING, m.make_zxid(1, 2))), 0)
    r = _take(f)
    assert [m.describe(p) for p in _to(r, 1)] == ["ACK(0x200000000)", "ACK(0x100000002)"]
    f.step(Message(1, m.packet(m.UPTODATE, -1)), 0)
    r = _take(f)
    assert [m.describe(p) for p in _to(r, 1)] == ["ACK(0x200000000)"]  # the second one
    assert r.commit == [(m.make_zxid(1, 1), b"a")]
    f.step(Message(1, m.packet(m.PING, m.make_zxid(1, 2))), 0)
    assert [p.type for p in _to(_take(f), 1)] == [m.PING]


def test_txns_the_snapshot_already_holds_may_come_again_after_it() -> None:
    """LearnerHandler forwards from before it reads the SNAP's zxid: a txn
    committed in between comes both in the tree and as PROPOSAL+COMMIT."""
    f = _syncing_follower()
    snap_zxid = m.make_zxid(1, 5)
    for pkt in (m.packet(m.SNAP, snap_zxid, b"tree"),
                m.packet(m.PROPOSAL, m.make_zxid(1, 5), b"e"),
                m.packet(m.COMMIT, m.make_zxid(1, 5)),
                m.packet(m.PROPOSAL, m.make_zxid(1, 6), b"f"),
                m.packet(m.COMMIT, m.make_zxid(1, 6)),
                m.packet(m.NEWLEADER, m.make_zxid(2, 0)), m.packet(m.UPTODATE, -1)):
        f.step(Message(1, pkt), 0)
    r = _take(f)
    assert f.following is not None and f.following.phase == "broadcast"
    assert r.install == [(snap_zxid, b"tree")]
    assert r.commit == [(m.make_zxid(1, 6), b"f")]


def test_a_diff_commits_the_learners_own_logged_txns() -> None:
    """A restarted follower holds logged txns it does not know are committed;
    DIFF's zxid (the leader's lastProcessedZxid) says they are."""
    f = _syncing_follower(_history(3))
    for pkt in (m.packet(m.DIFF, m.make_zxid(1, 3)), m.packet(m.NEWLEADER, m.make_zxid(2, 0)),
                m.packet(m.UPTODATE, -1)):
        f.step(Message(1, pkt), 0)
    assert [z for z, _ in _take(f).commit] == [z for z, _ in _history(3)]


def test_an_observer_logs_informs_during_its_sync() -> None:
    f = _peer(2, DiskState(1, 1, 0, []))
    _elect(f, 1)
    f.following.observer = True
    _take(f)
    for pkt in (m.packet(m.LEADERINFO, m.make_zxid(2, 0), m.int_data(m.PROTOCOL_VERSION)),
                m.packet(m.DIFF, 0), m.packet(m.INFORM, m.make_zxid(1, 1), b"a"),
                m.packet(m.NEWLEADER, m.make_zxid(2, 0)),
                m.packet(m.INFORM, m.make_zxid(2, 1), b"b")):
        f.step(Message(1, pkt), 0)
    r = _take(f)
    assert r.commit == [] and f.history.last_zxid == m.make_zxid(2, 1)
    f.step(Message(1, m.packet(m.UPTODATE, -1)), 0)
    assert [z for z, _ in _take(f).commit] == [m.make_zxid(1, 1), m.make_zxid(2, 1)]


def test_a_learner_asks_the_leader_about_a_reconnecting_session() -> None:
    leader, f2, f3 = _three()
    _establish(leader, f2, f3)
    f2.step(Revalidate(0x77, 4000), 0)
    (pkt,) = _to(_take(f2), 1)
    # Learner.validateSession: REVALIDATE, zxid -1, long session id + int timeout.
    assert pkt.encode() == m.QuorumPacket(m.REVALIDATE, -1, struct.pack(">qi", 0x77, 4000),
                                          None).encode()


def test_learner_info_is_read_as_learner_handler_reads_it() -> None:
    full = m.follower_info(5, 3, config_version=0x100000000)
    assert m.learner_info(full) == (5, m.PROTOCOL_VERSION, 0x100000000)
    assert full.zxid == m.make_zxid(3, 0)
    assert m.learner_info(m.packet(m.FOLLOWERINFO, 0, struct.pack(">q", 9))) == (9, 0, -1)


def test_the_hellos_trailer_comes_after_what_zookeeper_reads() -> None:
    """zkpy's features ride after the fields ZooKeeper reads (LearnerHandler: a
    LearnerInfo's long, int and long; Learner: LEADERINFO's int), which stay
    ZooKeeper's bytes; a hello without the trailer, or with another mark,
    offers nothing."""
    info = m.follower_info(5, 3, config_version=7)
    assert info.data[:20] == m.LearnerInfo(5, m.PROTOCOL_VERSION, 7).encode()
    assert info.data[20:] == b"zkpy" + struct.pack(">i", m.WATERMARKS)
    assert m.features_of(info) == m.WATERMARKS
    lead = m.leader_info(m.make_zxid(2, 0))
    assert lead.data[:4] == m.int_data(m.PROTOCOL_VERSION)
    assert m.features_of(lead) == m.WATERMARKS
    zookeepers = [m.follower_info(5, 3, features=0), m.leader_info(m.make_zxid(2, 0), 0),
                  m.packet(m.LEADERINFO, 0, m.int_data(m.PROTOCOL_VERSION)),
                  m.packet(m.FOLLOWERINFO, 0, struct.pack(">q", 9)),
                  m.packet(m.LEADERINFO, 0, m.int_data(m.PROTOCOL_VERSION) + b"zkpx\0\0\0\1"),
                  m.packet(m.LEADERINFO, 0, None)]
    assert zookeepers[0].data == m.LearnerInfo(5, m.PROTOCOL_VERSION, 0).encode()
    assert zookeepers[1].data == m.int_data(m.PROTOCOL_VERSION)
    assert [m.features_of(p) for p in zookeepers] == [0] * len(zookeepers)


# -- the SNAP stream -------------------------------------------------------------------------


def _tree() -> tuple[DataTree, dict[int, int]]:
    tree = DataTree.empty()
    acl = [S.ACL(31, S.Id("world", "anyone"))]
    for i, (path, data, owner) in enumerate([("/a", b"data", 0), ("/a/b", b"", 0x55),
                                             ("/c", None, 0)], 1):
        hdr = S.TxnHeader(0x55, i, m.make_zxid(1, i), i, 1)
        tree.apply(hdr, S.CreateTxn(path, data, acl if path != "/a/b" else
                                    [S.ACL(1, S.Id("digest", "u:x"))], owner != 0, 0))
    return tree, {0x55: 7000}


def test_snap_stream_is_zookeepers_layout_and_rebuilds_the_snapshot() -> None:
    tree, sessions = _tree()
    file_bytes = snapshot_bytes(tree, sessions)
    stream = snapstream.stream_of(file_bytes)
    # serializeSnapshot: session count and pairs first, the signature last.
    assert stream[:16] == struct.pack(">iqi", 1, 0x55, 7000)
    assert stream.endswith(struct.pack(">i", 10) + b"BenWasHere")
    assert stream[:-14].endswith(struct.pack(">i", 1) + b"/")
    rebuilt = snapstream.snapshot_of(stream)
    # The file's bytes up to its seal; a SNAP stream carries no digest trailer.
    body = len(rebuilt) - 13  # then the seal: Adler32 as a long, and the ustring "/"
    assert rebuilt[:body] == file_bytes[:body]
    assert rebuilt[body:] == struct.pack(">qi", zlib.adler32(rebuilt[:body]), 1) + b"/"
    tree2, sessions2 = parse_snapshot(rebuilt, tree.last_zxid, trailer=False)
    assert sessions2 == sessions and set(tree2.nodes) == set(tree.nodes)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_snap_stream_reader_finds_the_end_in_pieces(chunk: int) -> None:
    stream = snapstream.stream_of(snapshot_bytes(*_tree()))
    after = m.packet(m.NEWLEADER, m.make_zxid(2, 0)).encode()
    data = stream + after
    reader = snapstream.SnapStreamReader()
    buf = bytearray()
    end = None
    for i in range(0, len(data), chunk):
        buf += data[i:i + chunk]
        end = reader.feed(buf)
        if end is not None:
            break
    assert end == len(stream)


def test_snap_stream_without_signature_is_refused() -> None:
    stream = bytearray(snapstream.stream_of(snapshot_bytes(*_tree())))
    stream[-10:] = b"BenWasGone"
    with pytest.raises(snapstream.SnapStreamError):
        snapstream.SnapStreamReader().feed(stream)
    with pytest.raises(snapstream.SnapStreamError):
        snapstream.SnapStreamReader().feed(struct.pack(">i", -5))


def _links(sid: int, got: list, reactor: object = None) -> QuorumLinks:
    return QuorumLinks(reactor, sid, {1: ("127.0.0.1", 2888)},
                       lambda s, ps: got.extend((s, p) for p in ps), lambda s: None)


def test_a_snap_is_streamed_and_read_back_as_one_packet() -> None:
    tree, sessions = _tree()
    snap = m.packet(m.SNAP, tree.last_zxid, snapshot_bytes(tree, sessions))
    leader_side = _links(1, [])
    conn = leader_side.buildProtocol(None)
    transport = _Transport()
    conn.makeConnection(transport)
    conn.write(snap)
    conn.write(m.packet(m.NEWLEADER, m.make_zxid(2, 0)))
    wire = transport.value()
    empty = m.packet(m.SNAP, tree.last_zxid).encode()
    assert wire.startswith(empty)  # LearnerHandler: SNAP with no data, then the stream
    assert wire[len(empty):].startswith(snapstream.stream_of(snap.data)[:16])

    got: list = []
    reactor = MemoryReactorClock()
    learner_side = _links(2, got, reactor)
    learner_side.send(1, m.follower_info(2, 1))  # connects to the leader
    factory = reactor.tcpClients[0][2]
    proto = factory.buildProtocol(None)
    proto.makeConnection(_Transport())
    for i in range(0, len(wire), 1000):
        proto.dataReceived(wire[i:i + 1000])
    assert [(s, p.type) for s, p in got] == [(1, m.SNAP), (1, m.NEWLEADER)]
    received = got[0][1]
    assert received.zxid == snap.zxid
    assert parse_snapshot(received.data, snap.zxid, trailer=False)[0].nodes.keys() == tree.nodes.keys()
    # Built while it came in: the replica installs this tree, parsing nothing again.
    assert isinstance(received.data, BuiltSnapshot)
    assert received.data.tree.nodes.keys() == tree.nodes.keys()
    assert received.data.sessions == sessions


def test_a_snap_stream_that_is_no_tree_closes_that_connection() -> None:
    tree = DataTree()
    acl = [S.ACL(31, S.Id("world", "anyone"))]
    for i, path in enumerate(["/a", "/a/b"], 1):
        tree.apply(S.TxnHeader(0x55, i, m.make_zxid(1, i), i, 1),
                   S.CreateTxn(path, b"", acl, False, 0))
    stream = snapstream.stream_of(snapshot_bytes(tree, {}))
    at = stream.index(struct.pack(">i", 2) + b"/a")
    broken = stream[:at + 4] + b"/q" + stream[at + 6:]  # "/a/b" has no parent now
    got: list = []
    reactor = MemoryReactorClock()
    learner_side = _links(2, got, reactor)
    learner_side.send(1, m.follower_info(2, 1))
    proto = reactor.tcpClients[0][2].buildProtocol(None)
    transport = _Transport()
    proto.makeConnection(transport)
    proto.dataReceived(m.packet(m.SNAP, tree.last_zxid).encode() + broken)
    assert transport.disconnecting and got == []


class _FullTransport(StringTransport):
    """A socket whose buffer the stream overfills: the transport pauses its
    producer as a real one does while it writes, and resumes it once drained."""

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and self.streaming:
            self.producer.pauseProducing()

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


@pytest.mark.parametrize("full", [False, True])
def test_the_leader_says_when_a_snaps_state_has_left_its_buffers(full: bool) -> None:
    tree, sessions = _tree()
    reactor = MemoryReactorClock()
    leader_side = QuorumLinks(reactor, 1, {1: ("127.0.0.1", 2888)}, lambda s, ps: None,
                              lambda s: None, snapshot_maker=lambda: SnapshotMaker(tree, sessions))
    out: list[int] = []
    leader_side.on_state_sent = out.append
    conn = leader_side.buildProtocol(None)
    transport = _FullTransport() if full else _Transport()
    conn.makeConnection(transport)
    conn.sid = 2
    conn.write(m.packet(m.SNAP, tree.last_zxid, None))
    conn.write(m.packet(m.NEWLEADER, m.make_zxid(2, 0)))  # held until the state is out
    assert out == []
    for _ in range(5):
        reactor.advance(0)
    assert transport.value().endswith(m.packet(m.NEWLEADER, m.make_zxid(2, 0)).encode())
    if full:
        assert out == []  # written, not sent: the learner's wait has not begun
        transport.producer.resumeProducing()
    assert out == [2] and transport.producer is None


def _learner(reactor: MemoryReactorClock, got: list, heard: list) -> tuple[QuorumLinks, Any]:
    links = _links(2, got, reactor)
    links.on_heard = heard.append
    links.send(1, m.follower_info(2, 1))  # connects to the leader
    proto = reactor.tcpClients[0][2].buildProtocol(None)
    proto.makeConnection(_Transport())
    return links, proto


def _streaming_leader() -> tuple[DataTree, MemoryReactorClock, Any, StringTransport]:
    """A leader's connection to learner 2 over a tree of many slices."""
    tree = DataTree()
    acl = [S.ACL(31, S.Id("world", "anyone"))]
    for i in range(1, 5001):
        tree.apply(S.TxnHeader(0x55, i, m.make_zxid(1, i), i, 1),
                   S.CreateTxn(f"/n{i}", b"v", acl, False, 0))
    reactor = MemoryReactorClock()
    leader_side = QuorumLinks(reactor, 1, {1: ("127.0.0.1", 2888)}, lambda s, ps: None,
                              lambda s: None, snapshot_maker=lambda: SnapshotMaker(tree, {}))
    conn = leader_side.buildProtocol(None)
    transport = _Transport()
    conn.makeConnection(transport)
    conn.sid = 2
    return tree, reactor, conn, transport


def test_the_state_goes_out_a_slice_at_a_time_and_the_learner_hears_it_coming(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tree, reactor, conn, transport = _streaming_leader()
    writes: list[int] = []  # how much had been written at each reactor turn's slice
    real_step = SnapshotMaker.step

    def step(maker: SnapshotMaker, budget: int = 2000) -> bool:
        writes.append(len(transport.value()))
        return real_step(maker, budget)

    monkeypatch.setattr(SnapshotMaker, "step", step)
    conn.write(m.packet(m.SNAP, tree.last_zxid, None))
    reactor.advance(0)
    wire = transport.value()
    # The SNAP and the map before the first slice, each slice out before the next.
    assert len(writes) >= 3 and writes[0] > len(m.packet(m.SNAP, 0).encode())
    assert writes == sorted(set(writes)) and writes[-1] < len(wire)
    first = writes[1]

    got: list = []
    heard: list = []
    learner_reactor = MemoryReactorClock()
    _, proto = _learner(learner_reactor, got, heard)
    proto.dataReceived(wire[:first])
    assert not gc.isenabled()  # a tree is being built: zkpy.net.heap
    proto.dataReceived(wire[first:first + 100])  # within the same second
    assert heard == [1] and got == []
    learner_reactor.advance(1.0)
    proto.dataReceived(wire[first + 100:first + 200])
    assert heard == [1, 1]
    proto.dataReceived(wire[first + 200:])
    assert [(s, p.type) for s, p in got] == [(1, m.SNAP)]
    assert got[0][1].data.tree.nodes.keys() == tree.nodes.keys()
    assert gc.isenabled()

    _, cut = _learner(MemoryReactorClock(), [], [])
    cut.dataReceived(wire[:first])
    assert not gc.isenabled()
    cut.connectionLost(None)  # the leader went away mid-stream
    assert gc.isenabled()


def test_an_acl_newer_than_the_streamed_map_drops_that_learner(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tree, reactor, conn, transport = _streaming_leader()
    conn.write(m.packet(m.SNAP, tree.last_zxid, None))
    # Before the walk reaches /n999 (children go out in name order), its ACL
    # changes to one the map already sent does not hold.
    real_step = SnapshotMaker.step

    def step(maker: SnapshotMaker, budget: int = 2000) -> bool:
        if maker.count == 0:
            tree.apply(S.TxnHeader(0x55, 9999, m.make_zxid(1, 9999), 9999, 7),
                       S.SetACLTxn("/n999", [S.ACL(1, S.Id("digest", "u:x"))], 1))
        return real_step(maker, budget)

    monkeypatch.setattr(SnapshotMaker, "step", step)
    conn.write(m.packet(m.SNAP, tree.last_zxid, None))
    reactor.advance(0)
    assert transport.disconnecting and conn.held is None


class _Transport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:
        pass
