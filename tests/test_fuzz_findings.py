"""What fuzzing found, one test per finding (issue 17).

Each test replays the shape of an input the fuzzers of ``zkpy.testing.fuzz``
found breaking the contract (a mutated input closes its connection or fails
its load with a clear message, and nothing else), through the same
harness, and checks the fixed behaviour.
"""

from __future__ import annotations

from zkpy.testing.fuzz.quorum import HostileWorld, _close, _connect, _feed
from zkpy.testing.fuzz.quorumwire import learner_stream


def test_a_leader_forgets_the_acks_of_a_server_outside_the_ensemble() -> None:
    # Found by the quorum target: every server id that ever connected and ACKed
    # kept a watermark on the leader, forever.
    world = HostileWorld()
    leader = world.wait_stable()
    for sid in (9, 10, 11):
        proto = _connect(world.fronts[leader.id][0])
        _feed(proto, world, learner_stream(sid), 0)
        assert sid in leader.peer.leading.acked  # it synced and ACKed as a learner
        _close(proto, world)
        assert sid not in leader.peer.leading.acked
    assert set(leader.peer.leading.acked) <= {1, 2, 3}


def test_a_dynamic_config_host_the_membership_text_cannot_carry_is_refused(tmp_path) -> None:
    # Found by the dynconfig target: a host with a control character loaded, but
    # the membership's text (/zookeeper/config, NEWLEADER, votes) that carried it
    # did not read back, and the resolver rejects it with a UnicodeError.
    import pytest

    from zkpy.config import ConfigError, load_config

    (tmp_path / "myid").write_text("1\n")
    dynamic = tmp_path / "zoo.cfg.dynamic.100000000"
    dynamic.write_bytes(b"server.1=lo\x1ecal:2888:3888;2181\n")
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"dataDir={tmp_path}\ninitLimit=5\nsyncLimit=2\ndynamicConfigFile={dynamic}\n")
    with pytest.raises(ConfigError, match="not a host name or address"):
        load_config(str(cfg))


def _bad_utf8_snapshot() -> bytes:
    """The sample snapshot with one byte of a node's path made invalid UTF-8, sealed again."""
    from zkpy.testing.fuzz.seeds import sample, seal, snapshot_body

    body = snapshot_body()
    at = body.index(b"/app")
    return seal(body[:at + 1] + b"\xff" + body[at + 2:], (sample().snapshot_zxid, 2, 0))


def test_a_snapshot_with_a_path_that_is_not_utf8_is_invalid_not_a_crash(tmp_path) -> None:
    # Found by the snapshot and snapstream targets: UnicodeDecodeError escaped
    # parse_snapshot, so start-up did not fall back to an older snapshot and a
    # SNAP from a leader raised out of the follower.
    import pytest

    from zkpy.storage.recovery import load
    from zkpy.storage.snapshot import SnapshotInvalid, parse_snapshot
    from zkpy.testing.fuzz.seeds import sample

    with pytest.raises(SnapshotInvalid, match="utf-8"):
        parse_snapshot(_bad_utf8_snapshot(), 0x100)
    (tmp_path / "snapshot.1").write_bytes(sample().snapshot)
    (tmp_path / "snapshot.100").write_bytes(_bad_utf8_snapshot())
    state = load(str(tmp_path), str(tmp_path))
    assert state.snapshot_zxid == 1 and state.tree.get("/app") is not None


def test_a_logged_txn_that_does_not_decode_fails_the_load_with_its_zxid(tmp_path) -> None:
    # Found by the datadir target: an entry whose checksum holds but whose body
    # does not decode passed recovery and raised JuteError while the server
    # replayed it at start-up.
    import pytest

    from zkpy.storage.recovery import RecoveryError, load
    from zkpy.testing.fuzz.seeds import log_file, sample

    s = sample()
    zxid, data = s.log[2]
    broken = list(s.log[:2]) + [(zxid, data[:28] + b"\x00\x01\x00\x00")]
    (tmp_path / f"snapshot.{s.snapshot_zxid:x}").write_bytes(s.snapshot)
    (tmp_path / f"log.{s.log[0][0]:x}").write_bytes(log_file(broken))
    with pytest.raises(RecoveryError, match=f"transaction 0x{zxid:x} does not decode"):
        load(str(tmp_path), str(tmp_path))


def test_an_epoch_file_that_is_not_an_epoch_fails_the_load_with_its_name(tmp_path) -> None:
    # Found by the datadir target: binary bytes in currentEpoch raised
    # UnicodeDecodeError, and an epoch no zxid can carry (2^31 and up) loaded.
    import pytest

    from zkpy.storage.recovery import RecoveryError, load

    for text in (b"1\xe8", b"-1", b"2147483647", b"\x00", b"+5", b"1_0"):
        (tmp_path / "currentEpoch").write_bytes(text)
        with pytest.raises(RecoveryError, match="currentEpoch.*is not an epoch number"):
            load(str(tmp_path), str(tmp_path))
    (tmp_path / "currentEpoch").write_bytes(b"2147483646\n")
    (tmp_path / "acceptedEpoch").write_bytes(b"2147483646")
    assert load(str(tmp_path), str(tmp_path)).current_epoch == 0x7FFFFFFE


def test_a_logged_zxid_of_an_epoch_no_zxid_can_follow_fails_the_load(tmp_path) -> None:
    # Found by the datadir target (seed 3): with no epoch files, the epoch of the
    # last logged zxid becomes the current epoch; a txn header mutated to epoch
    # 2^31-1 (its checksum redone) loaded, and the next leader's epoch would
    # overflow every zxid, as an epoch file's did before 89cb7db.
    import struct

    import pytest

    from zkpy.storage.recovery import RecoveryError, load
    from zkpy.testing.fuzz.seeds import log_file, sample
    from zkpy.zab import messages as m

    s = sample()
    zxid, data = s.log[2]
    far = m.make_zxid(m.MAX_EPOCH + 1, 1)
    entries = list(s.log[:2]) + [(far, data[:12] + struct.pack(">q", far) + data[20:])]
    (tmp_path / f"snapshot.{s.snapshot_zxid:x}").write_bytes(s.snapshot)
    (tmp_path / f"log.{s.log[0][0]:x}").write_bytes(log_file(entries))
    with pytest.raises(RecoveryError, match=f"transaction 0x{far:x} has an epoch past"):
        load(str(tmp_path), str(tmp_path))
    entries[2] = (m.make_zxid(m.MAX_EPOCH, 1), data[:12] + struct.pack(
        ">q", m.make_zxid(m.MAX_EPOCH, 1)) + data[20:])
    (tmp_path / f"log.{s.log[0][0]:x}").write_bytes(log_file(entries))
    assert load(str(tmp_path), str(tmp_path)).current_epoch == m.MAX_EPOCH


def test_a_txn_with_a_null_acl_gets_the_open_acl_as_in_zookeeper() -> None:
    # Found by the datadir target: a logged create with a null ACL vector (which
    # ZooKeeper's ACL cache reads as OPEN_ACL_UNSAFE) raised TypeError on replay.
    from zkpy.jute import schema as S
    from zkpy.tree.datatree import OPEN_ACL_UNSAFE, DataTree

    tree = DataTree()
    tree.apply(S.TxnHeader(1, 1, 5, 0, 1), S.CreateTxn("/n", b"", None, False, 1))
    assert tree.get("/n").acl == OPEN_ACL_UNSAFE
    tree.apply(S.TxnHeader(1, 2, 6, 0, 7), S.SetACLTxn("/n", [], 0))
    assert tree.get("/n").acl == ()  # an empty list stays empty: nobody may do anything


def test_txns_on_paths_the_tree_cannot_hold_do_not_decode() -> None:
    # Found by the datadir target: a logged create of "" made the root its own
    # child, and saving the tree as a snapshot then looped for ever.
    import pytest

    from zkpy.jute import schema as S
    from zkpy.jute.codec import JuteError
    from zkpy.jute.protocol import Op
    from zkpy.storage.formats import decode_entry, encode_txn

    def entry(op: int, body: object) -> bytes:
        return encode_txn(S.TxnHeader(1, 1, 5, 0, op), body)

    bad = [entry(Op.create, S.CreateTxn(p, b"", [], False, 1)) for p in ("", "/", "a", "/a/", "//a")]
    bad += [entry(Op.delete, S.DeleteTxn("/")), entry(Op.setData, S.SetDataTxn(None, b"", 0)),
            entry(Op.closeSession, S.CloseSessionTxn(["/e", "x"])),
            S.TxnHeader(1, 1, 5, 0, Op.multi).encode()
            + S.MultiTxn([S.Txn(Op.multi, S.MultiTxn([]).encode())]).encode()]
    for data in bad:
        with pytest.raises(JuteError):
            decode_entry(data)
    for good in (entry(Op.setData, S.SetDataTxn("/", b"x", 0)),
                 entry(Op.create, S.CreateTxn("/a/.b", b"", [], False, 1))):
        decode_entry(good)


def test_a_snapshot_node_the_tree_cannot_hang_is_invalid() -> None:
    # The snapshot side of the same: "//" would make the root its own child.
    import pytest

    from zkpy.storage.snapshot import SnapshotInvalid, parse_snapshot
    from zkpy.testing.fuzz.seeds import seal, snapshot_body

    body = snapshot_body()
    for bad in (b"//", b"/c/", b"ab"):  # in place of the leaf /ttl: no orphans follow
        at = body.index(b"\x00\x00\x00\x04/ttl")
        mutated = body[:at] + len(bad).to_bytes(4, "big") + bad + body[at + 8:]
        with pytest.raises(SnapshotInvalid):
            parse_snapshot(seal(mutated), 0x100)


def test_a_child_count_at_the_int_limit_wraps_as_java_int_does() -> None:
    # Found by the snapshot target (seed 3): a loaded node whose stored cversion was
    # 2^31-1 made the next create under it raise struct.error (its digest packs an
    # int), and its Stat would not encode. ZooKeeper's int arithmetic wraps: the
    # txn carries -2^31, which DataTree.createNode does not take (not above the
    # stored one), and copyStat's 2*cversion - numChildren wraps too.
    from zkpy.server.core import CoreSettings
    from zkpy.testing.fuzz.client import T0, probe
    from zkpy.testing.standalone import standalone

    core = standalone(CoreSettings(), T0).core
    root = core.tree.nodes["/"]
    root.ccount = 0x7FFFFFFF
    core.tree._rehash("/", root)
    probe(core, T0, 4000)  # create, read, delete under / answered without error
    assert root.ccount == 0x7FFFFFFF and core.tree.digests.mismatches == 0
    assert root.stat().cversion == -2 - root.numChildren
    root.stat().encode()  # a reply can carry it


# -- the quorum port ---------------------------------------------------------------------


def _leader_says(*pkts: object) -> tuple[object, object]:
    """Member 1 follows an outsider playing leader 3 (zkpy.testing.fuzz.quorum), which
    opens with a good LEADERINFO and DIFF, then sends ``pkts``."""
    from zkpy.testing.fuzz.quorum import follower_of_outsider
    from zkpy.zab import messages as m

    world, proto = follower_of_outsider()
    head = [m.packet(m.LEADERINFO, m.make_zxid(1, 0), m.int_data(m.PROTOCOL_VERSION)),
            m.packet(m.DIFF, 0)]
    _feed(proto, world, b"".join(m.encode_packet(p) for p in head + list(pkts)), 0)
    return world, proto


def test_a_follower_refuses_a_proposal_it_cannot_decode() -> None:
    # Found by the quorum target (a leader's stream): the follower logged the
    # txn, and raised JuteError out of the adapter when its COMMIT came; on
    # restart its own log no longer loaded.
    from zkpy.jute import schema as S
    from zkpy.jute.protocol import Op
    from zkpy.storage.formats import encode_txn
    from zkpy.zab import messages as m

    z = m.make_zxid(1, 1)
    good = encode_txn(S.TxnHeader(1, 1, z, 0, Op.create),
                      S.CreateTxn("/x", b"", [], False, 1))
    for txn in (good[:40], encode_txn(S.TxnHeader(1, 1, z + 5, 0, Op.createSession),
                                      S.CreateSessionTxn(30000))):
        world, proto = _leader_says(m.packet(m.PROPOSAL, z, txn), m.packet(m.COMMIT, z))
        member = world.members[1]
        assert member.peer.role == 0 and proto.closed  # LOOKING, the connection dropped
        assert world.disks[1].log == [] and member.core.last_zxid == 0


def test_a_follower_refuses_a_snap_that_does_not_load_or_goes_back() -> None:
    # Found by the quorum target: a SNAP whose tree does not load raised out of
    # the follower (and on a real server, out of its disk thread, which stops the
    # server); a SNAP or TRUNC below what it applied raised SafetyError. (Since
    # main's c409162 the quorum link builds the tree as the stream arrives and
    # closes the connection on one that is no tree.)
    from zkpy.storage.snapstream import stream_of
    from zkpy.testing.fuzz.quorum import follower_of_outsider
    from zkpy.testing.fuzz.seeds import sample, seal, snapshot_body
    from zkpy.zab import messages as m

    body = snapshot_body()
    at = body.index(b"/app")
    broken = seal(body[:at + 1] + b"\xff" + body[at + 2:])  # a path that is not UTF-8
    for snap, zxid in ((broken, 5), (sample().snapshot, -1)):
        world, proto = follower_of_outsider()
        info = m.packet(m.LEADERINFO, m.make_zxid(1, 0), m.int_data(m.PROTOCOL_VERSION))
        _feed(proto, world, m.encode_packet(info) + m.encode_packet(m.packet(m.SNAP, zxid))
              + stream_of(snap), 0)
        assert proto.closed
        _close(proto, world)  # what the reactor reports once the connection is gone
        assert world.members[1].peer.role == 0
        assert world.disks[1].snapshot == (0, b"")
    world, proto = follower_of_outsider()
    world.members[1].peer.applied = 7  # as if it had applied up to 7 before
    info = m.packet(m.LEADERINFO, m.make_zxid(1, 0), m.int_data(m.PROTOCOL_VERSION))
    _feed(proto, world, m.encode_packet(info) + m.encode_packet(m.packet(m.TRUNC, 3)), 0)
    assert world.members[1].peer.role == 0 and proto.closed


def test_a_snap_packet_carrying_data_is_followed_by_the_stream_all_the_same() -> None:
    # Found by the quorum target (a leader's stream): a SNAP packet whose data
    # was not empty went to the replica as the snapshot itself, and its parse
    # raised SnapshotInvalid out of the adapter. ZooKeeper's learner reads the
    # state from the stream after any SNAP, ignoring the packet's data.
    from zkpy.storage.snapstream import stream_of
    from zkpy.testing.fuzz.quorum import follower_of_outsider
    from zkpy.testing.fuzz.seeds import sample
    from zkpy.zab import messages as m

    info = m.encode_packet(m.packet(m.LEADERINFO, m.make_zxid(1, 0),
                                    m.int_data(m.PROTOCOL_VERSION)))
    s = sample()
    snap = m.encode_packet(m.packet(m.SNAP, s.snapshot_zxid, b"\x00\x07junk"))
    world, proto = follower_of_outsider()
    _feed(proto, world, info + snap + stream_of(s.snapshot), 0)
    assert not proto.closed and world.members[1].core.tree.get("/app") is not None
    world, proto = follower_of_outsider()
    _feed(proto, world, info + snap + b"\xff" * 32, 0)  # no state after it
    assert proto.closed
    _close(proto, world)
    assert world.members[1].peer.role == 0 and world.disks[1].snapshot == (0, b"")


def test_epochs_no_zxid_can_carry_are_refused_on_the_wire() -> None:
    # Found by the quorum target: a LEADERINFO (or a learner's FOLLOWERINFO) of
    # epoch 2^31-1 was taken, and the next leader's epoch overflowed every zxid.
    from zkpy.testing.fuzz.quorum import follower_of_outsider
    from zkpy.zab import messages as m

    world, proto = follower_of_outsider()
    info = m.packet(m.LEADERINFO, m.make_zxid(m.MAX_EPOCH + 1, 0), m.int_data(0x10000))
    _feed(proto, world, m.encode_packet(info), 0)
    assert world.members[1].peer.role == 0 and world.disks[1].accepted == 0
    world = HostileWorld()
    leader = world.wait_stable()
    proto = _connect(world.fronts[leader.id][0])
    _feed(proto, world, m.encode_packet(m.follower_info(9, m.MAX_EPOCH + 1)), 0)
    assert proto.closed and 9 not in leader.peer.leading.learners


def test_an_outsider_cannot_make_the_leader_step_down() -> None:
    # Found by the quorum target: an ACKEPOCH claiming a newer epoch than the
    # leader's made an established leader go back to election (since main's
    # a691daf an established leader syncs such a latecomer, as ZooKeeper's
    # does once electionFinished); a FOLLOWERINFO naming another server left its
    # learner behind.
    from zkpy.zab import messages as m

    world = HostileWorld()
    leader = world.wait_stable()
    changes = leader.replica.role_changes
    ahead = m.follower_info(9, 0).encode() + m.packet(m.ACKEPOCH, 1 << 40, m.int_data(7)).encode()
    liar = m.follower_info(10, 0).encode() + m.follower_info(11, 0).encode()
    for stream, dropped in ((ahead, False), (liar, True)):
        proto = _connect(world.fronts[leader.id][0])
        _feed(proto, world, stream, 0)
        assert proto.closed == dropped
        _close(proto, world)
        assert not set(leader.peer.leading.learners) - {1, 2}
    assert leader.replica.role_changes == changes and leader.replica.mode == "leader"


def test_an_outsider_ahead_cannot_stop_a_leader_gathering_its_quorum() -> None:
    # The same ACKEPOCH while the leader still gathers its voters' epoch ACKs
    # (Leader.waitForEpochAck before electionFinished): only a voter ahead of it
    # may keep it from leading; an outsider's learner goes, as ZooKeeper's
    # LearnerHandler throws for it alone.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_zab_scenarios import Script

    from zkpy.zab import messages as m
    from zkpy.zab.events import LEADING, Message

    s = Script()
    s.down.add(9)  # the outsider: the script carries nothing to it
    s.elect(s.ids)
    leader = s.peers[3]
    assert leader.role == LEADING and leader.leading is not None
    s.deliver(1, 3)  # 1's FOLLOWERINFO: with ours a quorum, the epoch is chosen
    s.sync(3)  # our acceptedEpoch is saved; LEADERINFO goes out
    s.step(3, Message(9, m.follower_info(9, 0)))
    s.sync(3)
    assert not leader.leading.sync_started  # no voter has acked the epoch yet
    s.step(3, Message(9, m.packet(m.ACKEPOCH, 1 << 40, m.int_data(7))))
    assert leader.role == LEADING, leader.last_reason
    assert 9 not in leader.leading.learners
    s.settle(s.ids)
    assert leader.can_propose and s.peers[1].leader_id == 3


# -- the election port ---------------------------------------------------------------------


def test_an_outsiders_election_address_is_forgotten_once_the_dial_back_ends() -> None:
    # Found by the election target: a server outside the membership with a
    # smaller id was answered by dialling the address its initial message gave,
    # and that address (and the vote held for it) stayed in the member's table
    # for ever, one entry per id a stranger cared to claim.
    from zkpy.testing.fuzz.quorumwire import election_stream

    world = HostileWorld()
    world.wait_stable()
    election = world.fronts[3][1]
    for sid in (0, -1, -7):
        proto = _connect(election)
        _feed(proto, world, election_stream(sid), 0)
        assert election.returning.get(sid) == ("127.0.0.1", 3999)  # dialling it back
        assert world.reactor.tcpClients[-1][:2] == ("127.0.0.1", 3999)
        _close(proto, world)  # nobody answers there: the dial fails
        assert sid not in election.returning and sid not in election.held
    assert set(election.peers) == {1, 2, 3}


def test_an_initial_message_port_with_two_signs_is_a_wire_error() -> None:
    # Found by the wire target (once its addresses were built from pieces): a
    # port of "+-5" passed the check and int() raised ValueError, which the
    # election adapter does not catch (it catches WireError).
    import struct

    import pytest

    from zkpy.zab import wire

    for port in ("+-5", "-+5", "++5", "5-"):
        text = f"h:{port}".encode()
        with pytest.raises(wire.WireError, match="bad port"):
            wire.split_initial_message(struct.pack(">qqi", wire.PROTOCOL_VERSION_V1, 5,
                                                   len(text)) + text)
    text = b"h:+3888"
    msg, _ = wire.split_initial_message(struct.pack(">qqi", wire.PROTOCOL_VERSION_V1, 5,
                                                    len(text)) + text)
    assert msg.addresses == (("h", 3888),)


# -- memory and connections held by strangers ---------------------------------------------


def test_a_quorum_packet_longer_than_jute_maxbuffer_allows_ends_its_connection() -> None:
    # Found while writing the quorum harness (by reading, not by an input): a packet's
    # data could claim up to 1 GiB, and a connection that announced that much (before
    # even saying who it is) made the member buffer all it sent. ZooKeeper bounds each field by
    # jute.maxbuffer plus its extra size.
    import struct

    from twisted.internet.testing import MemoryReactorClock

    from zkpy.net.peerlinks import QuorumLinks
    from zkpy.testing.fuzz.quorum import _Transport
    from zkpy.zab import messages as m

    links = QuorumLinks(MemoryReactorClock(), 1, {}, lambda s, p: None, lambda s: None)
    links.max_packet = m.packet_limit(1000)
    proto = links.buildProtocol(None)
    proto.makeConnection(_Transport())
    proto.dataReceived(struct.pack(">iqi", m.FOLLOWERINFO, 0, 2025) + b"x" * 100)
    assert proto.closed and proto.transport.disconnecting
    ok = links.buildProtocol(None)
    ok.makeConnection(_Transport())
    ok.dataReceived(m.QuorumPacket(m.PING, 0, b"x" * 2024, None).encode()[:50])
    assert not ok.closed  # within the limit: waits for the rest


def test_a_stranger_that_never_says_who_it_is_is_disconnected() -> None:
    # Found while writing the live fuzzer (by reading): a connection to the quorum or
    # election port that sends nothing (or not a
    # whole FOLLOWERINFO / initial message) held its socket for ever; ZooKeeper
    # reads the handshake with a timeout of tickTime * initLimit.
    from twisted.internet.testing import MemoryReactorClock

    from zkpy.net.peerlinks import ElectionLinks, QuorumLinks
    from zkpy.testing.fuzz.quorum import _Transport

    reactor = MemoryReactorClock()
    quorum = QuorumLinks(reactor, 1, {}, lambda s, p: None, lambda s: None, connect_window=4.0)
    election = ElectionLinks(reactor, 1, {1: ("127.0.0.1", 3888)}, lambda s, n, c: None)
    election.handshake_window = 4.0
    idle = [links.buildProtocol(None) for links in (quorum, election, quorum, election)]
    for proto in idle:
        proto.makeConnection(_Transport())
    idle[2].dataReceived(b"\x00\x00\x00\x0b")  # part of a FOLLOWERINFO
    idle[3].dataReceived(b"\xff\xff\xff\xff\xff\xff\x00")  # part of an initial message
    reactor.advance(3.9)
    assert not any(p.transport.disconnecting for p in idle)
    reactor.advance(0.2)
    assert all(p.transport.disconnecting for p in idle)
