"""linearizableReads on the in-memory ensemble of ``zkpy.testing.replicasim``.

Each scenario runs twice: without the setting it shows the stale read
ZooKeeper's design allows (a lagging follower, a leader that was deposed
while its process was stopped), and with it the same read waits for a read
point the leader confirmed with a quorum, and never answers the old value.
Then what the mechanism promises besides: batching (one request per turn per
member, one confirmation round for many), session order (a read never
overtakes an earlier write, and a later write never overtakes a read), and
nothing changed on the wire with the setting off.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_replica import SimClient, call, create, open_session
from zk_harness import frame

from zkpy.jute import schema as S
from zkpy.jute.codec import decode_all
from zkpy.jute.protocol import Op
from zkpy.testing.replicasim import Sim
from zkpy.zab import messages as m


def sim(linear: bool, size: int = 3) -> Sim:
    s = Sim(size, settings={"linear_reads": linear})
    s.wait_stable()
    return s


def get(c: SimClient, path: str) -> int:
    return c.submit(Op.getData, S.GetDataRequest(path, False))


def value(reply: tuple[Any, bytes]) -> bytes:
    hdr, body = reply
    assert hdr.err == 0, hdr
    data: bytes = decode_all(S.GetDataResponse, body).data
    return data


def set_data(s: Sim, c: SimClient, path: str, data: bytes) -> None:
    hdr, _ = call(s, c, Op.setData, S.SetDataRequest(path, data, -1))
    assert hdr.err == 0


@pytest.mark.parametrize("linear", [False, True])
def test_a_lagging_follower(linear: bool) -> None:
    """The leader and g commit a write while the leader's packets to f wait on
    their way; a client of f reads. Plain reads answer f's old value; with the
    setting f's read waits for the leader's SYNC, behind the COMMIT."""
    s = sim(linear)
    leader = s.leader()
    f, g = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"old")
    b = open_session(s, f)
    s.paused.add((leader.id, f.id))
    set_data(s, a, "/x", b"new")  # acknowledged: the leader and g logged it
    xid = get(b, "/x")
    s.settle()
    replies = b.replies()
    if not linear:
        assert [value(r) for r in replies] == [b"old"]  # stale: ZooKeeper allows it
        return
    assert replies == []  # waiting for its read point
    s.paused.clear()
    s.settle()
    (reply,) = b.replies()
    assert reply[0].xid == xid and value(reply) == b"new"


@pytest.mark.parametrize("linear", [False, True])
def test_a_leader_deposed_while_stopped(linear: bool) -> None:
    """The leader's process stops; the others elect a new leader and commit a
    write. The old leader resumes with a client's read in its socket: it still
    believes it leads. Plain, it answers the old value; with the setting the
    read waits for a quorum that never answers, and the connection is closed
    when the old leader steps down."""
    s = sim(linear)
    old = s.leader()
    a = open_session(s, old)
    create(s, a, "/x", b"old")
    s.pause(old.id)
    s.wait_for(lambda: any(mb.replica.mode == "leader" for mb in s.members.values()
                           if mb is not old))
    new = next(mb for mb in s.members.values() if mb.replica.mode == "leader" and mb is not old)
    c = open_session(s, new)
    set_data(s, c, "/x", b"new")
    xids: list[int] = []
    s.resume(old.id, first=lambda: xids.append(get(a, "/x")))
    replies = a.replies()
    if not linear:
        assert [value(r) for r in replies] == [b"old"]  # stale
        return
    assert replies == [] and not a.closed
    s.wait_for(lambda: a.closed)  # the old leader stepped down: no answer, ever
    assert a.replies() == []
    assert old.core.read_gate is not None and not old.core.read_gate.asking


# -- batching ------------------------------------------------------------------------------


def read_point_requests(s: Sim, src: int) -> list[m.QuorumPacket]:
    """The learner syncs of session 0 (read points) ``src`` sent the leader."""
    return [pkt for a, _, pkt in s.delivered if a == src and pkt.type == m.REQUEST
            and m.request_head(pkt.data) == (0, 0, Op.sync)]


def test_reads_of_one_turn_share_one_read_point() -> None:
    s = sim(True)
    leader = s.leader()
    f, _ = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"v")
    b = open_session(s, f)
    s.delivered.clear()
    frames = b"".join(frame(S.RequestHeader(100 + i, Op.getData), S.GetDataRequest("/x", False))
                      for i in range(10))
    b.send(frames)  # ten pipelined reads in one segment: one turn of f
    s.settle()
    replies = b.replies()
    assert [r[0].xid for r in replies] == list(range(100, 110))
    assert all(value(r) == b"v" for r in replies)
    assert len(read_point_requests(s, f.id)) == 1
    gate = f.core.read_gate
    assert gate is not None and (gate.reads, gate.requests) == (10, 1)


def test_one_round_answers_every_request_that_came_during_the_last() -> None:
    """The leader's own reads start a round; while it is out (its PINGs wait on
    their way), read points asked by both followers and by more of its own
    clients all wait for the next round: two rounds for four requests."""
    s = sim(True)
    leader = s.leader()
    f, g = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"v")
    b, c, d = open_session(s, f), open_session(s, g), open_session(s, leader)
    reads = leader.peer.leading.reads
    assert reads is not None
    before = reads.started
    s.paused |= {(leader.id, f.id), (leader.id, g.id)}
    first = get(a, "/x")  # round 1
    s.settle()
    later = {b: get(b, "/x"), c: get(c, "/x"), d: get(d, "/x")}  # all during round 1
    s.settle()
    assert reads.started - before == 1 and len(reads.waiters) == 4
    s.paused.clear()
    s.settle()
    assert [r[0].xid for r in a.replies()] == [first]
    for client, xid in later.items():
        (reply,) = client.replies()
        assert reply[0].xid == xid and value(reply) == b"v"
    assert reads.started - before == 2 and reads.confirmed == reads.started


def test_reads_that_come_while_a_request_is_out_wait_for_the_next() -> None:
    s = sim(True)
    leader = s.leader()
    f, _ = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"v")
    b, c = open_session(s, f), open_session(s, f)
    s.paused.add((f.id, leader.id))
    s.delivered.clear()
    first = get(b, "/x")
    s.settle()
    later = [get(c, "/x") for _ in range(5)]  # while the first request is out
    s.settle()
    assert f.core.read_gate is not None and len(f.core.read_gate.next) == 5
    s.paused.clear()
    s.settle()
    assert [r[0].xid for r in b.replies()] == [first]
    assert [r[0].xid for r in c.replies()] == later
    assert len(read_point_requests(s, f.id)) == 2  # one for the first, one for the five


# -- session order --------------------------------------------------------------------------


def test_a_pipelined_session_keeps_its_order() -> None:
    """write, read, write, read on a follower: each read sees the write before it
    and not the one after, though the second write could commit before the
    first read's read point arrives: it is kept back until that read is answered."""
    s = sim(True)
    leader = s.leader()
    f, _ = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"0")
    b = open_session(s, f)
    w1 = b.submit(Op.setData, S.SetDataRequest("/x", b"1", -1))
    r2 = get(b, "/x")
    w3 = b.submit(Op.setData, S.SetDataRequest("/x", b"3", -1))
    r4 = get(b, "/x")
    conn = f.core.connections[max(f.core.connections)]
    assert conn.unanswered == 1 and len(conn.deferred) == 2  # w3 and what follows it
    s.settle()
    replies = b.replies()
    assert [r[0].xid for r in replies] == [w1, r2, w3, r4]
    assert value(replies[1]) == b"1" and value(replies[3]) == b"3"
    assert conn.unanswered == 0 and conn.deferred == []


def test_a_read_waits_for_the_sessions_write_and_its_read_point() -> None:
    s = sim(True)
    leader = s.leader()
    f, g = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"0")
    b = open_session(s, f)
    s.hold(leader.id)
    s.hold(g.id)  # the write cannot commit yet
    w = b.submit(Op.setData, S.SetDataRequest("/x", b"1", -1))
    r = get(b, "/x")
    s.settle()
    assert b.replies() == []
    s.release(leader.id)
    s.release(g.id)
    replies = b.replies()
    assert [x[0].xid for x in replies] == [w, r] and value(replies[1]) == b"1"


# -- every kind of member ----------------------------------------------------------------------


def test_the_leaders_own_reads_and_syncs_wait_for_a_round() -> None:
    s = sim(True)
    leader = s.leader()
    f, g = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"v")
    s.paused.add((f.id, leader.id))
    s.paused.add((g.id, leader.id))  # no PING answer reaches the leader
    xid = get(a, "/x")
    sync = a.submit(Op.sync, S.SyncRequest("/x"))
    s.settle()
    assert a.replies() == []
    s.paused.discard((g.id, leader.id))  # one follower's answer makes a quorum
    s.settle()
    assert [r[0].xid for r in a.replies()] == [xid, sync]


def test_an_observer_reads_through_the_leader() -> None:
    from test_reconfig import config

    members = config(1, 2, 3, observers=(4,))
    s = Sim(configs={i: members for i in (1, 2, 3, 4)}, settings={"linear_reads": True})
    s.wait_for(lambda: s.members[4].replica.mode == "observer" and s.stable())
    leader = s.leader()
    obs = s.members[4]
    a = open_session(s, leader)
    create(s, a, "/x", b"old")
    b = open_session(s, obs)
    s.paused.add((leader.id, obs.id))
    set_data(s, a, "/x", b"new")
    xid = get(b, "/x")
    s.settle()
    assert b.replies() == []  # the SYNC waits behind the INFORM
    s.paused.clear()
    s.settle()
    (reply,) = b.replies()
    assert reply[0].xid == xid and value(reply) == b"new"
    # The observer's PING answers never count: the rounds heard from voters.
    reads = leader.peer.leading.reads
    assert reads is not None and 4 not in leader.peer.voters


def test_one_voter_confirms_at_once() -> None:
    s = Sim(1, settings={"linear_reads": True})
    s.wait_stable()
    (only,) = s.members.values()
    a = open_session(s, only)
    create(s, a, "/x", b"v")
    xid = get(a, "/x")  # answered within the turn: no quorum to wait for
    (reply,) = a.replies()
    assert reply[0].xid == xid and value(reply) == b"v"


# -- the wire ---------------------------------------------------------------------------------


def test_off_reads_send_nothing_and_pings_carry_the_last_zxid() -> None:
    s = sim(False)
    leader = s.leader()
    f, _ = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"v")
    b = open_session(s, f)
    s.delivered.clear()
    for _ in range(5):
        get(b, "/x")
    s.settle()
    assert len(b.replies()) == 5 and s.delivered == []
    assert leader.core.read_gate is None and f.core.read_gate is None
    s.advance(s.tick_time)
    pings = [pkt for src, _, pkt in s.delivered if src == leader.id and pkt.type == m.PING]
    assert pings and all(p.zxid == leader.peer.last_zxid for p in pings)


def test_on_pings_carry_the_round_and_are_echoed() -> None:
    s = sim(True)
    leader = s.leader()
    reads = leader.peer.leading.reads
    assert reads is not None
    s.delivered.clear()
    s.advance(s.tick_time)
    pings = [(src, pkt.zxid) for src, _, pkt in s.delivered if pkt.type == m.PING]
    assert {z for _, z in pings} == {reads.started}
    assert {src for src, _ in pings} == set(s.ids)  # sent by the leader, echoed by both


def test_a_leader_without_the_setting_still_answers_a_read_point() -> None:
    """A follower with the setting and a leader without (a zkpy leader configured
    otherwise, or Apache ZooKeeper's, which answers any learner sync): the reads
    are answered, as fresh as sync() then read."""
    s = Sim(3)
    leader = s.wait_stable()
    f, _ = s.followers()
    f.core.settings.linear_reads = True  # as if f alone had been configured with it
    from zkpy.server.linear_reads import ReadGate

    f.core.read_gate = ReadGate(f.core)
    f.core.read_gate.become(f.core.mode)
    a = open_session(s, leader)
    create(s, a, "/x", b"v")
    b = open_session(s, f)
    xid = get(b, "/x")
    s.settle()
    (reply,) = b.replies()
    assert reply[0].xid == xid and value(reply) == b"v"
    assert len(read_point_requests(s, f.id)) == 1


# -- sync, the baseline -----------------------------------------------------------------------


def test_a_followers_answered_syncs_are_not_outstanding_writes() -> None:
    """Found by bench/linreads.py: each client sync a follower forwarded stayed
    counted in ``outstanding_writes`` after its SYNC came back, so past
    globalOutstandingLimit syncs the follower stopped reading every client
    with a request in flight (zkpy.net.clientport's throttle) until their
    sessions expired."""
    s = sim(False)
    leader = s.leader()
    f, _ = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"v")
    b = open_session(s, f)
    for _ in range(3):
        xid = b.submit(Op.sync, S.SyncRequest("/x"))
        s.settle()
        assert [r[0].xid for r in b.replies()] == [xid]
    assert f.core.outstanding_writes == 0
    set_data(s, b, "/x", b"w")  # a forwarded write is counted until its commit
    assert f.core.outstanding_writes == 0
