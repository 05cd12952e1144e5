"""The Zab peer's rules, one at a time, by stepping peers by hand.

Each test drives ``zkpy.zab.peer.Peer`` objects directly: no network, no
simulator; messages are passed between them with ``deliver``. What is
checked is what the adapter would be told to do (the Ready): which packets
go out at once, which wait for the disk, what to persist, what to apply.
"""

from __future__ import annotations

import pytest

from zkpy.testing.zabsim import with_state
from zkpy.zab import messages as m
from zkpy.zab.election import Notification
from zkpy.zab.events import (
    FOLLOWING,
    LEADING,
    LOOKING,
    Append,
    ConnectionLost,
    DiskState,
    Heard,
    InstallSnapshot,
    Message,
    Messages,
    Persisted,
    Propose,
    Ready,
    SaveEpoch,
    StateSent,
    Tick,
    Truncate,
    Vote,
)
from zkpy.zab.peer import Peer

VOTERS = frozenset({1, 2, 3})


def _peer(i: int, disk: DiskState | None = None, state: bytes = b"") -> Peer:
    return Peer(i, VOTERS, disk or DiskState(), lambda: state, sync_limit=3, init_limit=6)


def _elect(p: Peer, leader: int) -> None:
    """Make ``p`` decide for ``leader`` through its election."""
    p.step(Tick(), 0)  # starts the first round
    if leader == p.my_id:  # the others vote for us in our round
        for src in VOTERS - {p.my_id}:
            vote = Notification(src, LOOKING, leader, p.last_zxid, p.election.round,
                                p.current_epoch)
            p.step(Vote(src, vote), 0)
        t = 0
        while p.role == LOOKING and t < 1000:
            t += 100
            p.step(Tick(), t)
    else:  # the others already follow, or lead
        for src in VOTERS - {p.my_id}:
            state = LEADING if src == leader else FOLLOWING
            p.step(Vote(src, Notification(src, state, leader, 0, 1, 0)), 0)


def _take(p: Peer) -> Ready:
    r = p.ready()
    p.advance()
    return r


def _packets(r: Ready, dest: int, durable: bool = False) -> list[str]:
    out = r.send_after_persist if durable else r.send
    return [m.describe(pkt) for d, pkt in out if d == dest]


def _deliver(r: Ready, src: int, dst: Peer, durable: bool = True,
             sender: Peer | None = None) -> None:
    """Deliver src's packets for dst: the immediate ones, then (if durable) the
    ones that waited for src's disk (a SNAP with ``sender``'s state, as links send it)."""
    out = list(r.send) + (list(r.send_after_persist) if durable else [])
    for dest, pkt in out:
        if dest == dst.my_id:
            dst.step(Message(src, with_state(pkt, sender) if sender else pkt), 0)


# -- wire format ----------------------------------------------------------------------


def test_quorum_packet_bytes_are_zookeepers() -> None:
    pkt = m.packet(m.PROPOSAL, m.make_zxid(2, 5), b"tx")
    assert pkt.encode() == (b"\x00\x00\x00\x02" + b"\x00\x00\x00\x02\x00\x00\x00\x05"
                            + b"\x00\x00\x00\x02tx" + b"\xff\xff\xff\xff")
    ping = m.packet(m.PING, 7)
    assert ping.encode()[-8:] == b"\xff\xff\xff\xff\xff\xff\xff\xff"  # null data, null authinfo
    info = m.follower_info(3, 4)
    assert info.zxid == 4 << 32 and m.learner_id(info) == 3
    assert m.LearnerInfo(3, m.PROTOCOL_VERSION, -1).encode() == (
        b"\x00" * 7 + b"\x03" + b"\x00\x01\x00\x00" + b"\xff" * 8)
    assert (m.REQUEST, m.PROPOSAL, m.ACK, m.COMMIT, m.PING, m.NEWLEADER, m.FOLLOWERINFO,
            m.UPTODATE, m.DIFF, m.TRUNC, m.SNAP, m.LEADERINFO, m.ACKEPOCH) == (
            1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 17, 18)


# -- discovery and synchronization ------------------------------------------------------


def _three(disks: dict[int, DiskState] | None = None,
           zookeeper: frozenset[int] = frozenset()) -> tuple[Peer, Peer, Peer]:
    """Peers 1 (leading), 2 and 3; those in ``zookeeper`` offer nothing past
    ZooKeeper's protocol in their hellos, as a ZooKeeper server."""
    disks = disks or {}
    leader, f2, f3 = (_peer(i, disks.get(i)) for i in (1, 2, 3))
    for p in (leader, f2, f3):
        if p.my_id in zookeeper:
            p.features = 0
    _elect(leader, 1)
    _elect(f2, 1)
    _elect(f3, 1)
    assert (leader.role, f2.role, f3.role) == (LEADING, FOLLOWING, FOLLOWING)
    return leader, f2, f3


def _establish(leader: Peer, *followers: Peer) -> None:
    """Run discovery and sync to completion, every disk syncing at once."""
    for _ in range(8):
        rl = _take(leader)
        _deliver(rl, 1, leader)
        for f in followers:
            _deliver(rl, 1, f)
            _deliver(_take(f), f.my_id, leader)


def test_discovery_picks_max_accepted_epoch_plus_one_once_a_quorum_connected() -> None:
    disks = {1: DiskState(accepted_epoch=3, current_epoch=3),
             2: DiskState(accepted_epoch=6, current_epoch=5)}
    leader, f2, f3 = _three(disks)
    assert _packets(_take(f2), 1) == ["FOLLOWERINFO(0x600000000)"]
    _take(leader)
    info = Ready()
    info.send.append((1, m.follower_info(2, 6)))
    _deliver(info, 2, leader)
    r = _take(leader)
    assert SaveEpoch(accepted=7) in r.persist
    # LEADERINFO waits for the leader's own acceptedEpoch to be synced.
    assert _packets(r, 2) == [] and _packets(r, 2, durable=True) == ["LEADERINFO(0x700000000)"]
    f2.step(Message(1, r.send_after_persist[0][1]), 0)
    r2 = _take(f2)
    assert r2.persist == [SaveEpoch(accepted=7)]
    assert _packets(r2, 1, durable=True) == ["ACKEPOCH(0x0)"]
    assert m.read_int(r2.send_after_persist[0][1].data) == 5  # its currentEpoch


def test_a_leader_re_elects_when_a_voter_promised_a_newer_epoch() -> None:
    leader, f2 = _synced_pair([], DiskState())
    epoch = leader.current_epoch
    leader.step(Message(3, m.follower_info(3, epoch + 5)), 0)
    assert leader.role == LOOKING  # the next epoch will be chosen above its promise


def test_a_follower_refuses_a_leader_whose_epoch_is_behind_its_accepted_epoch() -> None:
    f = _peer(2, DiskState(accepted_epoch=9, current_epoch=8))
    _elect(f, 1)
    _take(f)
    f.step(Message(1, m.packet(m.LEADERINFO, m.make_zxid(4, 0), m.int_data(m.PROTOCOL_VERSION))), 0)
    assert f.role == LOOKING
    assert 1 in _take(f).disconnect


def test_the_follower_persists_its_sync_before_acking_newleader() -> None:
    """ZOOKEEPER-3911: the ACK of NEWLEADER promises the synced history is on disk."""
    history = [(m.make_zxid(1, n), b"t%d" % n) for n in range(1, 4)]
    leader, f2, f3 = _three({1: DiskState(1, 1, 0, history)})
    _deliver(_take(f2), 2, leader)
    _deliver(_take(f3), 3, leader)
    rl = _take(leader)
    _deliver(rl, 1, f2)
    _deliver(_take(f2), 2, leader)
    rl = _take(leader)
    assert _packets(rl, 2)[:2] == ["DIFF(0x100000003)", "PROPOSAL(0x100000001)"]
    assert _packets(rl, 2)[-1] == "NEWLEADER(0x200000000)"
    _deliver(rl, 1, f2)
    r = _take(f2)
    assert r.persist == [Append(z, t) for z, t in history] + [SaveEpoch(current=2)]
    assert _packets(r, 1) == [] and _packets(r, 1, durable=True) == ["ACK(0x200000000)"]
    assert r.commit == []  # nothing applied before UPTODATE


def test_established_leader_commits_its_history_and_sends_uptodate() -> None:
    history = [(m.make_zxid(1, n), b"t%d" % n) for n in range(1, 3)]
    leader, f2, f3 = _three({1: DiskState(1, 1, 0, history)})
    commits: list[tuple[int, bytes]] = []
    for _ in range(8):
        rl = _take(leader)
        commits += rl.commit
        _deliver(rl, 1, leader)
        _deliver(rl, 1, f2)
        _deliver(_take(f2), 2, leader)
    assert leader.can_propose and commits == history
    assert f2.applied == history[-1][0] and f2.following is not None
    assert f2.following.phase == "broadcast"


def _synced_pair(history: list[tuple[int, bytes]], fdisk: DiskState,
                 zookeeper: frozenset[int] = frozenset()) -> tuple[Peer, Peer]:
    leader, f2, _ = _three({1: DiskState(1, 1, 0, history), 2: fdisk}, zookeeper)
    _establish(leader, f2)
    return leader, f2


def test_trunc_when_the_follower_has_an_old_epochs_uncommitted_tail() -> None:
    shared = [(m.make_zxid(1, 1), b"a"), (m.make_zxid(1, 2), b"b")]
    tail = [(m.make_zxid(1, 3), b"lost")]
    leader, f2, _ = _three({1: DiskState(2, 2, 0, shared), 2: DiskState(1, 1, 0, shared + tail)})
    _deliver(_take(f2), 2, leader)
    seen: list[str] = []
    for _ in range(4):
        rl = _take(leader)
        seen += _packets(rl, 2)
        _deliver(rl, 1, leader)
        _deliver(rl, 1, f2)
        rf = _take(f2)
        if any(isinstance(op, Truncate) for op in rf.persist):
            assert Truncate(m.make_zxid(1, 2)) in rf.persist
        _deliver(rf, 2, leader)
    assert "TRUNC(0x100000002)" in seen
    assert f2.last_zxid == m.make_zxid(1, 2)


def test_snap_when_the_follower_is_behind_the_in_memory_log() -> None:
    leader = Peer(1, VOTERS, DiskState(1, 1, m.make_zxid(1, 5), []), lambda: b"STATE",
                  sync_limit=3, init_limit=6)
    f2 = _peer(2, DiskState(1, 1, 0, [(m.make_zxid(1, 1), b"a")]))
    _elect(leader, 1)
    _elect(f2, 1)
    rf_all: list[Ready] = []
    for _ in range(6):
        rl = _take(leader)
        _deliver(rl, 1, leader)
        _deliver(rl, 1, f2, sender=leader)
        rf = _take(f2)
        rf_all.append(rf)
        _deliver(rf, 2, leader)
    installs = [op for r in rf_all for op in r.persist if isinstance(op, InstallSnapshot)]
    assert installs == [InstallSnapshot(m.make_zxid(1, 5), b"STATE")]
    assert [i for r in rf_all for i in r.install] == [(m.make_zxid(1, 5), b"STATE")]
    assert f2.applied == m.make_zxid(1, 5)


# -- broadcast ------------------------------------------------------------------------------


def test_the_leader_counts_its_own_ack_only_after_its_disk_synced() -> None:
    leader, f2 = _synced_pair([], DiskState())
    _take(f2)
    zxid = leader.next_zxid
    leader.step(Propose(b"x", zxid), 0)
    r = _take(leader)
    assert r.persist == [Append(zxid, b"x")]
    assert _packets(r, 2) == [f"PROPOSAL(0x{zxid:x})"]
    # The follower's ACK alone is not a quorum of three; with ours, once our
    # disk says it synced the proposal (Persisted), it is.
    _deliver(r, 1, f2, durable=False)
    rf = _take(f2)
    assert _packets(rf, 1) == [] and _packets(rf, 1, durable=True) == [f"ACK(0x{zxid:x})"]
    _deliver(rf, 2, leader)
    assert _take(leader).commit == []
    leader.step(Persisted(zxid - 1), 0)  # a sync of what came before it: still not ours
    assert _take(leader).commit == []
    leader.step(Persisted(zxid), 0)
    assert _take(leader).commit == [(zxid, b"x")]


def test_commits_go_out_in_zxid_order() -> None:
    leader, f2 = _synced_pair([], DiskState())
    _take(f2)
    z1 = leader.next_zxid
    leader.step(Propose(b"1"), 0)
    z2 = leader.next_zxid
    leader.step(Propose(b"2"), 0)
    _take(leader)
    leader.step(Persisted(z1), 0)
    assert _take(leader).commit == []  # only we hold z1 so far
    # A follower's ACK of z2 says its log holds everything up to z2 (logs are
    # written in order): z1 is committed first, then z2 as soon as we hold it too.
    leader.step(Message(2, m.packet(m.ACK, z2)), 0)
    r = _take(leader)
    assert r.commit == [(z1, b"1")] and _packets(r, 2) == [f"COMMIT(0x{z1:x})"]
    leader.step(Persisted(z2), 0)
    r = _take(leader)
    assert r.commit == [(z2, b"2")] and _packets(r, 2) == [f"COMMIT(0x{z2:x})"]


@pytest.mark.parametrize("follower", ["zookeeper", "zkpy"])
def test_one_ack_commits_a_run_of_proposals(follower: str) -> None:
    """A ZooKeeper follower gets a COMMIT per proposal (its
    FollowerZooKeeperServer.commit takes them one by one and exits on a gap);
    a zkpy follower, which said it takes watermarks, one for the run."""
    leader, f2 = _synced_pair([], DiskState(),
                              frozenset({2}) if follower == "zookeeper" else frozenset())
    _take(f2)
    zxids = []
    for i in range(5):
        zxids.append(leader.next_zxid)
        leader.step(Propose(b"%d" % i), 0)
    _take(leader)
    leader.step(Persisted(zxids[-1]), 0)
    assert _take(leader).commit == []
    # The follower's ACK of the fourth: the first four commit in one step, the
    # fifth waits.
    leader.step(Message(2, m.packet(m.ACK, zxids[3])), 0)
    r = _take(leader)
    assert r.commit == [(z, b"%d" % i) for i, z in enumerate(zxids[:4])]
    commits = zxids[:4] if follower == "zookeeper" else zxids[3:4]
    assert _packets(r, 2) == [f"COMMIT(0x{z:x})" for z in commits]
    leader.step(Message(2, m.packet(m.ACK, zxids[4])), 0)
    r = _take(leader)
    assert r.commit == [(zxids[4], b"4")] and _packets(r, 2) == [f"COMMIT(0x{zxids[4]:x})"]


def test_the_quorums_watermark_agrees_with_the_per_proposal_test() -> None:
    """``quorum_mark`` (worked out once per run of commits, and what
    ``quorum_holds`` asks outside a reconfig) against Leader.tryToCommit's
    test, counted here per zxid: the voters that hold it, we among them once
    if our log or our own ACK reaches it, must be a majority. Over memberships
    of 1 to 5 voters, ACKs from voters, from non-voters and from ourselves."""
    import random

    rnd = random.Random(14)
    leader, _ = _synced_pair([], DiskState())
    leading = leader.leading
    assert leading is not None and leading.pending_config is None
    me = leader.my_id

    def holds(z: int, voters: frozenset[int]) -> bool:
        holders = {sid for sid, upto in leading.acked.items() if upto >= z}
        if leading.logged >= z:
            holders.add(me)
        return len(holders & voters) * 2 > len(voters)

    for _ in range(2000):
        voters = frozenset(rnd.sample(range(1, 8), rnd.randint(1, 5)) + [1] * rnd.randint(0, 1))
        leader.voters = voters
        leading.logged = rnd.randint(0, 12)
        leading.acked = {sid: rnd.randint(0, 12) for sid in rnd.sample(range(1, 8), rnd.randint(0, 6))}
        mark = leading.quorum_mark()
        held = [z for z in range(1, 14) if holds(z, voters)]
        assert held == list(range(1, mark + 1)), (voters, leading.logged, leading.acked, mark)
        assert [z for z in range(1, 14) if leading.quorum_holds(z)] == held


# -- liveness ---------------------------------------------------------------------------------


def test_leader_without_a_synced_quorum_steps_down_after_sync_limit() -> None:
    leader, f2 = _synced_pair([], DiskState())
    for t in range(5):
        leader.step(Tick(), 1000 + t)
    assert leader.role == LOOKING
    r = _take(leader)
    assert 2 in r.disconnect
    assert [c.reason for c in r.roles] == ["not sufficient followers synced"]


def test_a_dropped_learner_and_a_lost_leader_say_why() -> None:
    leader, f2 = _synced_pair([], DiskState())
    leader.step(Message(2, m.packet(m.ACKEPOCH, 0, m.int_data(0))), 0)  # not now
    assert _take(leader).why == {2: "ACKEPOCH while synced (epoch 0)"}
    f2.step(Message(1, m.packet(m.FOLLOWERINFO, 0)), 0)
    r = _take(f2)
    assert r.disconnect == [1] and r.roles[-1].reason.startswith("unexpected FOLLOWERINFO")


def test_follower_goes_looking_when_the_leader_is_silent() -> None:
    leader, f2 = _synced_pair([], DiskState())
    for t in range(5):
        f2.step(Tick(), 1000 + t)
    assert f2.role == LOOKING


def test_losing_the_leader_connection_means_looking() -> None:
    leader, f2 = _synced_pair([], DiskState())
    f2.step(ConnectionLost(1), 0)
    assert f2.role == LOOKING
    leader.step(ConnectionLost(2), 0)
    assert 2 not in leader.leading.learners  # type: ignore[union-attr]


def test_an_ensemble_of_one_leads_itself() -> None:
    p = Peer(1, frozenset({1}), DiskState(), lambda: b"", sync_limit=3, init_limit=6)
    t = 0
    while p.role == LOOKING and t < 1000:
        t += 100
        p.step(Tick(), t)
    r = _take(p)
    assert p.role == LEADING
    for dest, pkt in r.send_after_persist:
        p.step(Message(dest, pkt), 1000)
    assert p.can_propose
    p.step(Propose(b"solo"), 1000)
    assert _take(p).persist == [Append(m.make_zxid(1, 1), b"solo")]
    p.step(Persisted(m.make_zxid(1, 1)), 1000)  # its own disk is the quorum
    assert _take(p).commit == [(m.make_zxid(1, 1), b"solo")]


# -- sync and session reports -----------------------------------------------------------


def _sync_request(session: int = 5, cxid: int = 9) -> m.QuorumPacket:
    return m.packet(m.REQUEST, -1, m.request_data(session, cxid, m.OP_SYNC, b"\x00\x00\x00\x01/"))


def test_a_sync_is_answered_at_once_when_nothing_is_in_flight() -> None:
    leader, f2 = _synced_pair([], DiskState())
    _take(f2)
    leader.step(Message(2, _sync_request()), 0)
    r = _take(leader)
    assert _packets(r, 2) == ["SYNC(0x0)"] and r.requests == []


def test_a_sync_follows_the_commit_of_the_newest_proposal_in_flight() -> None:
    """Leader.processSync: the follower must have applied everything the leader
    had proposed when the sync arrived before it answers its client."""
    leader, f2 = _synced_pair([], DiskState())
    _take(f2)
    z1 = leader.next_zxid
    leader.step(Propose(b"1"), 0)
    z2 = leader.next_zxid
    leader.step(Propose(b"2"), 0)
    _deliver(_take(leader), 1, f2, durable=False)  # the two PROPOSALs
    _take(f2)
    leader.step(Message(2, _sync_request()), 0)
    assert _packets(_take(leader), 2) == []
    for z in (z1, z2):
        leader.step(Message(1, m.packet(m.ACK, z)), 0)
        leader.step(Message(2, m.packet(m.ACK, z)), 0)
    r = _take(leader)
    assert _packets(r, 2) == [f"COMMIT(0x{z1:x})", f"COMMIT(0x{z2:x})", "SYNC(0x0)"]
    # The follower counts it only while broadcasting, after applying both commits.
    _deliver(r, 1, f2, durable=False)
    rf = _take(f2)
    assert rf.syncs == 1 and [z for z, _ in rf.commit] == [z1, z2]


def test_requests_carry_the_sessions_auth_and_pings_carry_touched_sessions() -> None:
    from zkpy.jute.schema import Id
    from zkpy.zab.events import Forward

    leader, f2 = _synced_pair([], DiskState())
    _take(f2)
    data = m.request_data(5, 1, 1, b"body")
    f2.step(Forward(data, [Id("digest", "u:x")]), 0)
    (dest, pkt), = _take(f2).send
    assert dest == 1 and pkt.zxid == -1 and pkt.authinfo == [Id("digest", "u:x")]
    leader.step(Message(2, pkt), 0)
    assert _take(leader).requests == [(2, data, [Id("digest", "u:x")])]
    f2.ping_data = lambda: b"touched"
    f2.step(Message(1, m.packet(m.PING, 3)), 0)
    (_, ping), = _take(f2).send
    leader.step(Message(2, ping), 0)
    assert _take(leader).pings == [(2, b"touched")]


def test_packets_read_together_are_one_step_and_stop_where_the_connection_was_dropped() -> None:
    leader, f2 = _synced_pair([], DiskState())
    _take(f2)
    z1 = leader.next_zxid
    leader.step(Propose(b"1"), 0)
    z2 = leader.next_zxid
    leader.step(Propose(b"2"), 0)
    _take(leader)
    leader.step(Persisted(z2), 0)
    # One read brought both ACKs: one step commits both.
    leader.step(Messages(2, [m.packet(m.ACK, z1), m.packet(m.ACK, z2)]), 0)
    assert [z for z, _ in _take(leader).commit] == [z1, z2]
    # A packet that makes us drop the connection: what followed it is not handled.
    z3 = leader.next_zxid
    leader.step(Propose(b"3"), 0)
    leader.step(Persisted(z3), 0)
    _take(leader)
    leader.step(Messages(2, [m.packet(m.COMMIT, 0), m.packet(m.ACK, z3)]), 0)
    r = _take(leader)
    assert r.disconnect == [2] and r.commit == []


@pytest.mark.parametrize("follower", ["zookeeper", "zkpy"])
def test_a_leader_commits_a_reads_acks_once_each_in_order_around_a_sync(follower: str) -> None:
    """A run of ACKs in one read is settled at its end or before any other
    packet of the read: every proposal acked is committed once, in zxid order,
    and the learner's sync among them is answered after the COMMIT of the
    newest proposal in flight when it came, as Leader.processSync does. A zkpy
    follower gets one COMMIT per run, and the one its SYNC waits for."""
    leader, f2 = _synced_pair([], DiskState(),
                              frozenset({2}) if follower == "zookeeper" else frozenset())
    _take(f2)
    zs = []
    for data in (b"1", b"2", b"3", b"4"):
        zs.append(leader.next_zxid)
        leader.step(Propose(data), 0)
    _take(leader)
    leader.step(Persisted(zs[-1]), 0)  # the leader's own log holds all four
    _take(leader)
    z1, z2, z3, z4 = zs
    batch = [m.packet(m.ACK, z1), m.packet(m.ACK, z2), _sync_request(),
             m.packet(m.ACK, z3), m.packet(m.ACK, z4)]
    leader.step(Messages(2, batch), 0)
    r = _take(leader)
    assert [z for z, _ in r.commit] == zs
    commits = zs if follower == "zookeeper" else [z2, z4]  # settled before the sync, then at the end
    assert _packets(r, 2) == [f"COMMIT(0x{z:x})" for z in commits] + ["SYNC(0x0)"]
    assert leader.leading is not None and not leader.leading.batching
    # A later ACK of what is committed decides nothing.
    leader.step(Messages(2, [m.packet(m.ACK, z4)]), 0)
    assert _take(leader).commit == []


@pytest.mark.parametrize("leader_kind", ["zookeeper", "zkpy"])
def test_a_follower_applies_the_commits_of_one_read_together(leader_kind: str) -> None:
    """...and ACKs each proposal to a ZooKeeper leader (Leader.processAck counts
    each zxid apart), the read's last one only to a zkpy leader."""
    leader, f2 = _synced_pair([], DiskState(),
                              frozenset({1}) if leader_kind == "zookeeper" else frozenset())
    _take(f2)
    z1, z2 = leader.next_zxid, leader.next_zxid + 1
    batch = [m.packet(m.PROPOSAL, z1, b"1"), m.packet(m.PROPOSAL, z2, b"2"),
             m.packet(m.COMMIT, z1), m.packet(m.COMMIT, z2)]
    f2.step(Messages(1, batch), 0)
    r = _take(f2)
    assert r.commit == [(z1, b"1"), (z2, b"2")]
    assert [op.zxid for op in r.persist] == [z1, z2]
    acks = [z1, z2] if leader_kind == "zookeeper" else [z2]
    assert _packets(r, 1, durable=True) == [f"ACK(0x{z:x})" for z in acks]


def test_a_learner_sent_our_state_is_timed_from_when_the_state_is_out() -> None:
    """LearnerHandler writes the snapshot, then waits initLimit for the ACK of
    NEWLEADER: walking and sending a big tree does not count against the learner."""
    leader, f2, f3 = _three({1: DiskState(1, 1, m.make_zxid(1, 5), [])})
    _establish(leader, f2)
    assert leader.leading is not None and leader.leading.established
    _deliver(_take(f3), 3, leader)  # FOLLOWERINFO
    _deliver(_take(leader), 1, f3)  # LEADERINFO
    _deliver(_take(f3), 3, leader)  # ACKEPOCH: the leader answers SNAP (no data) + NEWLEADER
    sent = [pkt for dest, pkt in _take(leader).send if dest == 3]
    assert [(p.type, p.data) for p in sent[:1]] == [(m.SNAP, None)]

    def tick(n: int) -> Ready:
        r = Ready()
        for _ in range(n):
            leader.step(Tick(), 0)
            r = _take(leader)
            _deliver(r, 1, f2)  # f2 keeps answering: the leader keeps its quorum
            _deliver(_take(f2), 2, leader)
        return r

    tick(3 * leader.init_limit)  # the state is still on its way
    assert 3 in leader.leading.learners
    leader.step(StateSent(3), 0)
    _take(leader)
    tick(leader.init_limit)
    assert 3 in leader.leading.learners
    r = tick(1)
    assert 3 not in leader.leading.learners
    assert r.why[3] == f"silent for {leader.init_limit} ticks while syncing"


def test_a_learner_reading_its_leaders_stream_is_hearing_from_it() -> None:
    """The bytes of a SNAP's stream make no packet until its end; like the
    socket read timeout of ZooKeeper's learner, they still count."""
    f = _peer(2, DiskState(1, 1, 0, []))
    _elect(f, 1)
    _take(f)
    f.step(Message(1, m.packet(m.LEADERINFO, m.make_zxid(2, 0), m.int_data(m.PROTOCOL_VERSION))), 0)
    for _ in range(3 * f.init_limit):
        f.step(Heard(1), 0)
        f.step(Heard(3), 0)  # not our leader: says nothing of it
        f.step(Tick(), 0)
    assert f.role == FOLLOWING
    for _ in range(f.init_limit + 1):
        f.step(Heard(3), 0)
        f.step(Tick(), 0)
    assert f.role == LOOKING
    assert _take(f).roles[-1].reason == f"leader 1 silent for {f.init_limit} ticks"
