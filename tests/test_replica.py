"""zkpy.server.replica end to end, on the in-memory ensemble of ``zkpy.testing.replicasim``.

Three members (ServerCore + Zab Peer + Replica), real jute client frames in
and out (``zk_harness.Client``), a fake clock and disks that sync only when
the test lets them: leader election, forwarded writes and syncs, session
expiry by the leader alone, failover and catch-up, durability before ACK,
what a client sees when its member loses the leader mid-write, and (8) the
leader's pending syncs, which must die with the learner connection they came on.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from zk_harness import OPEN, Client, frame

from zkpy.jute import schema as S
from zkpy.jute.codec import decode_all
from zkpy.jute.protocol import Op
from zkpy.server.core import ServerCore
from zkpy.storage.formats import decode_txn
from zkpy.testing.replicasim import Member, Sim
from zkpy.zab import messages as m

EPHEMERAL = 1
_PORTS = itertools.count(40000)


class SimClient(Client):
    """A zk_harness.Client on one member: the sim's clock; replies come once the sim settles."""

    def __init__(self, sim: Sim, member: Member) -> None:
        self.sim = sim
        super().__init__(member.core, sim.now, port=next(_PORTS))

    def send(self, data: bytes, now: int | None = None) -> None:
        super().send(data, self.sim.now)


def open_session(sim: Sim, member: Member, timeout: int = 30000, session_id: int = 0,
                 passwd: bytes = bytes(16)) -> SimClient:
    c = SimClient(sim, member)
    c.send(frame(S.ConnectRequest(0, 0, timeout, session_id, passwd, False)))
    sim.settle()
    frames = c.frames()
    assert len(frames) == 1, frames
    resp = decode_all(S.ConnectResponse, frames[0])
    assert resp.sessionId != 0, "session refused"
    c.session_id, c.passwd, c.timeout = resp.sessionId, resp.passwd, resp.timeOut
    return c


def call(sim: Sim, c: SimClient, op: int, record: Any = None, xid: int | None = None) -> Any:
    """Send one request, let the ensemble settle, return (ReplyHeader, body) of its reply."""
    xid = c.submit(op, record, xid)
    sim.settle()
    replies = c.replies()
    assert [hdr.xid for hdr, _ in replies] == [xid], replies
    return replies[0]


def create(sim: Sim, c: SimClient, path: str, data: bytes = b"", flags: int = 0) -> Any:
    return call(sim, c, Op.create, S.CreateRequest(path, data, OPEN, flags))


def tree_state(core: ServerCore) -> dict[str, tuple[Any, ...]]:
    return {path: (n.data, n.czxid, n.mzxid, n.version, n.owner)
            for path, n in core.tree.nodes.items()}


def assert_converged(sim: Sim) -> None:
    up = [mb for mb in sim.members.values() if mb.up]
    first = up[0]
    for mb in up[1:]:
        assert tree_state(mb.core) == tree_state(first.core), (first.id, mb.id)
        assert set(mb.core.sessions.sessions) == set(first.core.sessions.sessions)


def txns(sim: Sim, i: int) -> list[Any]:
    """The headers of the txns member i's disk holds."""
    return [decode_txn(txn)[0] for _, txn in sim.disks[i].log]


def other_followers(sim: Sim) -> tuple[Member, Member]:
    f, g = sim.followers()
    return f, g


# -- 1. election -------------------------------------------------------------------------


def test_three_members_elect_one_leader() -> None:
    sim = Sim()
    # Nobody serves unless established with a leader (with every voter up the
    # election needs no finalize wait, so that may already be the case).
    assert all(mb.replica.mode in ("leader", "follower")
               for mb in sim.members.values() if mb.core.serving)
    leader = sim.wait_stable()
    modes = sorted(mb.replica.mode for mb in sim.members.values())
    assert modes == ["follower", "follower", "leader"]
    assert all(mb.core.serving for mb in sim.members.values())
    assert all(mb.replica.leader == leader.id for mb in sim.members.values())
    assert leader.core.rules.expires
    assert not any(f.core.rules.expires for f in sim.followers())
    assert leader.peer.current_epoch == 1
    assert all(mb.peer.current_epoch == 1 for mb in sim.members.values())


# -- 2. a write through a follower -------------------------------------------------------


def test_create_on_follower_answers_after_commit_everywhere() -> None:
    sim = Sim()
    leader = sim.wait_stable()
    f, g = other_followers(sim)
    c = open_session(sim, f)
    xid = c.submit(Op.create, S.CreateRequest("/a", b"x", OPEN, 0))
    assert c.replies() == []  # forwarded: nothing until the commit comes back
    assert f.core.tree.get("/a") is None
    sim.settle()
    [(hdr, body)] = c.replies()
    assert (hdr.xid, hdr.err) == (xid, 0)
    assert decode_all(S.CreateResponse, body).path == "/a"
    node = leader.core.tree.get("/a")
    assert node is not None
    assert hdr.zxid == node.czxid
    assert m.epoch_of(hdr.zxid) == leader.peer.current_epoch
    for mb in sim.members.values():
        got = mb.core.tree.get("/a")
        assert got is not None and got.data == b"x" and got.czxid == hdr.zxid, mb.id
    # A reader on the other follower, after a sync, sees it.
    r = open_session(sim, g)
    hdr, body = call(sim, r, Op.sync, S.SyncRequest("/a"))
    assert hdr.err == 0 and decode_all(S.SyncResponse, body).path == "/a"
    hdr, body = call(sim, r, Op.getData, S.GetDataRequest("/a", False))
    resp = decode_all(S.GetDataResponse, body)
    assert hdr.err == 0 and resp.data == b"x" and resp.stat.mzxid == node.mzxid
    assert_converged(sim)


# -- 3. sync on a follower ---------------------------------------------------------------


def test_follower_sync_waits_for_the_leaders_sync() -> None:
    sim = Sim()
    leader = sim.wait_stable()
    f, g = other_followers(sim)
    writer = open_session(sim, leader)
    reader = open_session(sim, f)
    # The followers' disks hold: the create is proposed but cannot commit.
    sim.hold(f.id)
    sim.hold(g.id)
    wxid = writer.submit(Op.create, S.CreateRequest("/s", b"v", OPEN, 0))
    sim.settle()
    (zxid,) = leader.peer.leading.outstanding
    sxid = reader.submit(Op.sync, S.SyncRequest("/s"))
    gxid = reader.submit(Op.getData, S.GetDataRequest("/s", False))  # queued behind the sync
    sim.settle()
    assert reader.replies() == [] and writer.replies() == []
    assert leader.peer.leading.pending_syncs == {zxid: [f.id]}
    assert not any(pkt.type == m.SYNC for _, _, pkt in sim.delivered)
    assert f.core.tree.get("/s") is None
    sim.release(g.id)  # g's ACK makes the quorum: COMMIT, then SYNC, to f
    to_f = [pkt.type for src, dst, pkt in sim.delivered if (src, dst) == (leader.id, f.id)]
    assert to_f[-2:] == [m.COMMIT, m.SYNC]
    (whdr, _), = writer.replies()
    assert (whdr.xid, whdr.err, whdr.zxid) == (wxid, 0, zxid)
    replies = reader.replies()
    assert [(hdr.xid, hdr.err) for hdr, _ in replies] == [(sxid, 0), (gxid, 0)]
    assert replies[0][0].zxid >= zxid  # the sync reply reports the applied create
    resp = decode_all(S.GetDataResponse, replies[1][1])
    assert resp.data == b"v" and resp.stat.czxid == zxid
    sim.release(f.id)
    assert_converged(sim)


# -- 4. sessions -------------------------------------------------------------------------


def test_only_the_leader_expires_and_follower_pings_keep_sessions_alive() -> None:
    sim = Sim()
    leader = sim.wait_stable()
    f, g = other_followers(sim)
    silent = open_session(sim, f, timeout=4000)
    alive = open_session(sim, g, timeout=4000)
    assert silent.timeout == 4000
    for mb in sim.members.values():
        assert {silent.session_id, alive.session_id} <= set(mb.core.sessions.sessions), mb.id
    assert create(sim, silent, "/eph-silent", flags=EPHEMERAL)[0].err == 0
    assert create(sim, alive, "/eph-alive", flags=EPHEMERAL)[0].err == 0

    def ping_for(ms: int) -> None:
        for _ in range(ms // 1000):
            sim.advance(1000)
            hdr, _ = call(sim, alive, Op.ping, xid=-2)
            assert hdr.err == 0

    ping_for(3000)  # within the timeout: nobody is expired yet
    for mb in sim.members.values():
        assert silent.session_id in mb.core.sessions.sessions
        assert mb.core.tree.get("/eph-silent") is not None
    ping_for(4000)
    assert sim.leader() is leader
    for mb in sim.members.values():
        assert silent.session_id not in mb.core.sessions.sessions, mb.id
        assert mb.core.tree.get("/eph-silent") is None, mb.id
        assert alive.session_id in mb.core.sessions.sessions, mb.id
        assert mb.core.tree.get("/eph-alive") is not None, mb.id
    assert silent.closed  # its follower closed the connection of the closed session
    assert not alive.closed
    # The leader proposed the closeSession; g's PING replies carried the live session.
    closes = [h for h in txns(sim, leader.id) if h.type == Op.closeSession]
    assert [h.clientId for h in closes] == [silent.session_id]
    assert m.epoch_of(closes[0].zxid) == leader.peer.current_epoch
    touch = struct.pack(">q", alive.session_id)
    reports = [pkt.data or b"" for src, dst, pkt in sim.delivered
               if (src, dst, pkt.type) == (g.id, leader.id, m.PING)]
    assert any(touch in data for data in reports)
    assert_converged(sim)


# -- 5. leader crash ---------------------------------------------------------------------


@pytest.mark.parametrize(("log_window", "sync_kind"), [(500, m.DIFF), (1, m.SNAP)])
def test_leader_crash_failover_and_catch_up(log_window: int, sync_kind: int) -> None:
    sim = Sim(log_window=log_window)
    old = sim.wait_stable()
    f, _ = other_followers(sim)
    c = open_session(sim, f)
    assert create(sim, c, "/before", b"1")[0].err == 0
    assert create(sim, c, "/eph", flags=EPHEMERAL)[0].err == 0
    sim.crash(old.id)
    assert c.closed  # f lost its leader: it stopped serving and closed its clients
    new = sim.wait_stable()
    assert new.id != old.id and new.peer.current_epoch == 2
    for mb in sim.members.values():
        if mb.up:
            assert c.session_id in mb.core.sessions.sessions, mb.id
            assert mb.core.tree.get("/eph") is not None, mb.id
    # The client moves to the new leader with its session and writes there.
    c2 = open_session(sim, new, session_id=c.session_id, passwd=c.passwd)
    assert c2.session_id == c.session_id
    for k in range(3):
        hdr, _ = create(sim, c2, f"/after-{k}", b"2")
        assert hdr.err == 0 and m.epoch_of(hdr.zxid) == 2
    # The old leader comes back from its synced disk and catches up.
    mark = len(sim.delivered)
    sim.restart(old.id)
    assert sim.wait_stable() is new
    assert old.id in sim.members and sim.members[old.id].replica.mode == "follower"
    kinds = [pkt.type for src, dst, pkt in sim.delivered[mark:]
             if (src, dst) == (new.id, old.id) and pkt.type in (m.DIFF, m.TRUNC, m.SNAP)]
    assert kinds == [sync_kind]
    assert_converged(sim)
    assert sim.members[old.id].core.tree.get("/after-2") is not None
    # Once more, now from whatever that sync left on its disk.
    sim.crash(old.id)
    sim.restart(old.id)
    sim.wait_stable()
    assert_converged(sim)


# -- 6. durability before ACK ------------------------------------------------------------


def test_follower_ack_waits_for_its_disk() -> None:
    sim = Sim()
    leader = sim.wait_stable()
    f, g = other_followers(sim)
    c = open_session(sim, leader)
    sim.hold(f.id)
    sim.break_link(leader.id, g.id)
    assert leader.replica.mode == "leader" and g.replica.mode == "looking"
    xid = c.submit(Op.create, S.CreateRequest("/d", b"x", OPEN, 0))
    sim.settle()
    (zxid,) = leader.peer.leading.outstanding
    sim.advance(3 * sim.tick_time)  # pings go on; f stays a synced learner
    assert leader.replica.mode == "leader" and f.replica.mode == "follower"
    assert list(leader.peer.leading.outstanding) == [zxid]
    assert leader.peer.leading.ackers(zxid) == {leader.id}
    assert f.peer.history.txn(zxid) is not None  # f has the proposal...
    assert zxid not in [z for z, _ in sim.disks[f.id].log]  # ...not on its disk
    assert not any(pkt.type == m.ACK and pkt.zxid == zxid and src == f.id
                   for src, _, pkt in sim.delivered)
    assert c.replies() == []
    assert all(mb.core.tree.get("/d") is None for mb in sim.members.values())
    sim.release(f.id)
    assert zxid in [z for z, _ in sim.disks[f.id].log]
    [(hdr, _)] = c.replies()
    assert (hdr.xid, hdr.err, hdr.zxid) == (xid, 0, zxid)
    assert leader.core.tree.get("/d") is not None and f.core.tree.get("/d") is not None
    sim.heal(leader.id, g.id)
    sim.wait_stable()
    assert_converged(sim)


# -- 7. the leader goes away under a forwarded write -------------------------------------


@pytest.mark.parametrize("fault", ["break", "crash"])
def test_forwarded_write_loses_its_leader(fault: str) -> None:
    sim = Sim()
    leader = sim.wait_stable()
    f, g = other_followers(sim)
    c = open_session(sim, f)
    seen = len(c.stream)
    sim.hold(f.id)
    sim.hold(g.id)
    c.submit(Op.create, S.CreateRequest("/lost", b"x", OPEN, 0))
    sim.settle()
    assert len(leader.peer.leading.outstanding) == 1  # forwarded and proposed, not committed
    assert not c.closed and c.replies() == []
    if fault == "break":
        sim.break_link(f.id, leader.id)
    else:
        sim.crash(leader.id)
    assert c.closed
    assert not f.core.serving and f.replica.mode == "looking"
    assert len(c.stream) == seen  # no answer at all, right or wrong
    assert not f.replica.waiting and not f.core.connections
    sim.release(f.id)
    sim.release(g.id)
    if fault == "break":
        sim.heal(f.id, leader.id)
    else:
        sim.restart(leader.id)
    sim.wait_stable()
    assert_converged(sim)
    assert len(c.stream) == seen
    # The session survives; a reconnecting client finds the one outcome everyone agrees on.
    c2 = open_session(sim, f, session_id=c.session_id, passwd=c.passwd)
    hdr, _ = call(sim, c2, Op.exists, S.ExistsRequest("/lost", False))
    exists = f.core.tree.get("/lost") is not None
    assert hdr.err == (0 if exists else -101)
    if fault == "break":
        assert exists  # the leader and g committed it without f


# -- more forwarded traffic ----------------------------------------------------------------


def test_errors_watches_and_close_through_followers() -> None:
    sim = Sim()
    sim.wait_stable()
    f, g = other_followers(sim)
    c = open_session(sim, f)
    assert create(sim, c, "/x", b"1")[0].err == 0
    hdr, _ = create(sim, c, "/x", b"1")  # the leader's error txn comes back as the answer
    assert hdr.err == -110 and m.epoch_of(hdr.zxid) == 1
    w = open_session(sim, g)
    assert call(sim, w, Op.getData, S.GetDataRequest("/x", True))[0].err == 0
    assert call(sim, c, Op.setData, S.SetDataRequest("/x", b"2", -1))[0].err == 0
    assert w.replies() == [] and [(e.type, e.path) for e in w.events] == [(3, "/x")]
    assert create(sim, c, "/e", flags=EPHEMERAL)[0].err == 0
    hdr, _ = call(sim, c, Op.closeSession)
    assert hdr.err == 0 and c.closed
    for mb in sim.members.values():
        assert c.session_id not in mb.core.sessions.sessions and mb.core.tree.get("/e") is None
        assert mb.core.outstanding_writes == 0 and not mb.replica.waiting
    assert_converged(sim)


def test_a_followers_turn_forwards_its_writes_and_sync_in_order() -> None:
    """One read on a follower brings three writes and a sync of one session,
    then a write of another: the follower forwards them in the order they
    came, and each session's replies keep its order."""
    sim = Sim()
    leader = sim.wait_stable()
    f, _ = other_followers(sim)
    a = open_session(sim, f)
    b = open_session(sim, f)
    mark = len(sim.delivered)
    frames = [frame(S.RequestHeader(1, Op.create), S.CreateRequest("/p", b"1", OPEN, 0)),
              frame(S.RequestHeader(2, Op.setData), S.SetDataRequest("/p", b"2", -1)),
              frame(S.RequestHeader(3, Op.sync), S.SyncRequest("/p")),
              frame(S.RequestHeader(4, Op.setData), S.SetDataRequest("/p", b"4", 1))]
    a.send(b"".join(frames))
    b.submit(Op.create, S.CreateRequest("/q", b"", OPEN, 0))
    assert len(f.replica.waiting) == 4 and len(f.replica.syncs) == 1  # forwarded, unanswered
    sim.settle()
    sent = [m.request_type(pkt.data) for src, dst, pkt in sim.delivered[mark:]
            if (src, dst) == (f.id, leader.id) and pkt.type == m.REQUEST]
    assert sent == [Op.create, Op.setData, Op.sync, Op.setData, Op.create]
    assert [(hdr.xid, hdr.err) for hdr, _ in a.replies()] == [(1, 0), (2, 0), (3, 0), (4, 0)]
    assert [hdr.err for hdr, _ in b.replies()] == [0]
    node = f.core.tree.get("/p")
    assert node is not None and node.data == b"4" and node.version == 2
    assert not f.replica.waiting
    assert_converged(sim)


# -- 8. a sync left behind by a dropped connection ---------------------------------------


def test_stale_sync_does_not_reach_a_reconnected_follower() -> None:
    """A follower's sync waits at the leader behind an uncommitted proposal; the
    follower's connection drops and it reconnects. When the proposal commits, the
    old connection's SYNC must not go to the new one (ZooKeeper queues it on the dead
    LearnerHandler): a follower still synchronizing would take it as out of place."""
    sim = Sim()
    leader = sim.wait_stable()
    f, g = other_followers(sim)
    writer = open_session(sim, leader)
    reader = open_session(sim, f)
    sim.hold(f.id)
    sim.hold(g.id)
    writer.submit(Op.create, S.CreateRequest("/p", b"", OPEN, 0))
    reader.submit(Op.sync, S.SyncRequest("/"))
    sim.settle()
    (zxid,) = leader.peer.leading.outstanding
    assert leader.peer.leading.pending_syncs == {zxid: [f.id]}
    sim.break_link(f.id, leader.id)
    assert reader.closed and f.replica.mode == "looking"
    sim.heal(f.id, leader.id)
    # f finds the leader again; its disk still holds, so it waits in discovery.
    sim.wait_for(lambda: f.peer.following is not None and f.id in leader.peer.leading.learners)
    mark, changes = len(sim.delivered), f.replica.role_changes
    sim.release(g.id)  # g's ACK commits /p
    assert leader.core.tree.get("/p") is not None
    assert f.replica.role_changes == changes, f"f went back to LOOKING: {f.peer.last_reason}"
    to_f = [pkt.type for src, dst, pkt in sim.delivered[mark:] if (src, dst) == (leader.id, f.id)]
    assert m.SYNC not in to_f
    sim.release(f.id)
    sim.wait_stable()
    assert_converged(sim)


def test_stale_sync_does_not_answer_a_new_sync() -> None:
    """The same stale SYNC, once the follower is synced again: it answers a sync the
    leader has not even received, and the read behind it misses a write that was
    acknowledged before that sync was issued."""
    sim = Sim()
    leader = sim.wait_stable()
    f, g = other_followers(sim)
    writer = open_session(sim, leader)
    reader = open_session(sim, f)
    sim.hold(f.id)
    sim.hold(g.id)
    writer.submit(Op.create, S.CreateRequest("/p", b"", OPEN, 0))
    reader.submit(Op.sync, S.SyncRequest("/"))
    sim.settle()
    (p_zxid,) = leader.peer.leading.outstanding
    sim.break_link(f.id, leader.id)
    sim.sync(f.id)  # f's disk writes what it had (its ACK of /p rode the dead connection)
    sim.heal(f.id, leader.id)
    sim.wait_for(lambda: f.peer.following is not None and f.peer.following.phase == "epoch-acked")
    sim.sync(f.id)  # ACKEPOCH goes out; f takes DIFF + NEWLEADER and logs its epoch
    sim.settle()
    sim.paused.add((leader.id, f.id))
    sim.sync(f.id)  # its NEWLEADER ACK: the leader sends UPTODATE, COMMIT /p, ...
    sim.settle()
    assert leader.core.tree.get("/p") is not None
    assert [hdr.err for hdr, _ in writer.replies()] == [0]
    assert sim.deliver(leader.id, f.id).type == m.UPTODATE
    assert f.replica.mode == "follower" and f.core.serving
    # A write acknowledged to its client (g and the leader make the quorum)...
    sim.release(g.id)
    hdr, _ = create(sim, writer, "/q", b"q")
    assert hdr.err == 0
    # ...then a sync and a read on f: the read must see /q. The client reconnects
    # and pipelines both; f asks the leader about the session (REVALIDATE) first.
    again = SimClient(sim, f)
    again.send(frame(S.ConnectRequest(0, 0, 30000, reader.session_id, reader.passwd, False)))
    sxid = again.submit(Op.sync, S.SyncRequest("/q"))
    gxid = again.submit(Op.getData, S.GetDataRequest("/q", False))
    sim.paused.clear()
    sim.release(f.id)
    frames = again.frames()
    assert decode_all(S.ConnectResponse, frames[0]).sessionId == reader.session_id
    again.unread[:0] = b"".join(struct.pack(">i", len(fr)) + fr for fr in frames[1:])
    replies = again.replies()
    assert [hdr.xid for hdr, _ in replies] == [sxid, gxid]
    assert replies[1][0].err == 0, "a read after sync missed an acknowledged write"
    assert p_zxid < replies[1][0].zxid


# -- 9. a session that moved: REVALIDATE and SESSIONMOVED ---------------------------------


def test_a_write_left_behind_by_a_moved_session_is_session_moved() -> None:
    """Learner.validateSession / Leader.revalidateSession / checkSession: a client
    reconnects to another follower, which asks the leader (REVALIDATE); the
    leader now routes the session there, so a write still on its way from the
    old follower fails with SESSIONMOVED instead of being applied behind the
    client's back."""
    sim = Sim()
    leader = sim.wait_stable()
    f, g = other_followers(sim)
    old = open_session(sim, f)
    sim.paused.add((f.id, leader.id))  # f's REQUEST waits on its way
    stale = old.submit(Op.create, S.CreateRequest("/left-behind", b"", OPEN, 0))
    sim.settle()
    moved = open_session(sim, g, session_id=old.session_id, passwd=old.passwd)
    moved.xid = old.xid  # a client's xids go on counting after it reconnects
    assert leader.replica.owners[old.session_id] == g.id
    # mntr: g counts the client's reconnection, the leader the REVALIDATE it answered.
    assert (g.core.metrics.connection_revalidate_count, leader.core.metrics.revalidate_count,
            f.core.metrics.connection_revalidate_count) == (1, 1, 0)
    hdr, _ = create(sim, moved, "/through-g")
    assert hdr.err == 0
    sim.paused.clear()
    sim.settle()
    ((reply, _),) = old.replies()
    assert (reply.xid, reply.err) == (stale, -118)  # SESSIONMOVED
    assert all(mb.core.tree.get("/left-behind") is None for mb in sim.members.values())
    assert_converged(sim)


def test_a_follower_refuses_a_session_the_leader_expired() -> None:
    """The follower asks the leader: a session the leader is closing is refused
    even if the follower still holds it."""
    sim = Sim()
    leader = sim.wait_stable()
    f, _ = other_followers(sim)
    c = open_session(sim, f)
    leader.core.sessions.get(c.session_id).closing = True  # its closeSession is on its way
    again = SimClient(sim, f)
    again.send(frame(S.ConnectRequest(0, 0, 30000, c.session_id, c.passwd, False)))
    sim.settle()
    (resp,) = again.frames()
    assert decode_all(S.ConnectResponse, resp).sessionId == 0
