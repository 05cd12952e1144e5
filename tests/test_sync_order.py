"""A session's sync is answered in its order among the session's writes,
when the quorum packets that carry them arrive in one read.

``zkpy.net.peerlinks`` steps what one read of a quorum connection brought as
one ``Messages`` event, and a Ready keeps no order between its kinds of
output, so ``Peer`` cuts a batch where the order would break (``Ready.resume``).
Each scenario pauses one link so that the packets pile up, then hands them
over as peerlinks does; with and without ``linearizableReads`` (a client's
sync goes to the leader as a read point then, with the same ordering duty).
ZooKeeper answers these in order: the leader's sync goes through the request
pipeline behind the writes before it (ProposalRequestProcessor), and a
follower's CommitProcessor takes SYNCs and COMMITs in arrival order.
"""

from __future__ import annotations

import pytest
from test_replica import create, open_session

from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.testing.replicasim import Sim
from zkpy.zab import events as ev
from zkpy.zab import messages as m
from zkpy.zab.peer import Peer

#: plain: no member has linearizableReads; linear: every member has it (a
#: follower's client sync then waits for a read point, like a read, and a
#: write behind it waits for its answer); mixed: the leader has it and the
#: followers do not, as an Apache ZooKeeper follower would not (their client
#: syncs reach the leader as syncs of their sessions).
MODES = ("plain", "linear", "mixed")


def sim(mode: str) -> Sim:
    s = Sim(3, settings={"linear_reads": mode != "plain"})
    s.wait_stable()
    if mode == "mixed":
        for f in s.followers():
            f.core.read_gate = None
    return s


def in_one_read(s: Sim, src: int, dst: int) -> list[m.QuorumPacket]:
    """Unpause ``src -> dst`` and deliver what waited on it as one Messages."""
    packets = list(s.links[(src, dst)])
    s.links[(src, dst)].clear()
    s.paused.discard((src, dst))
    s.step(dst, ev.Messages(src, packets))
    s.settle()
    return packets


@pytest.mark.parametrize("mode", MODES)
def test_the_leader_reads_a_write_and_a_sync_together(mode: str) -> None:
    """A follower forwards a session's setData, then its sync; the leader reads
    both at once. The write is proposed only once the core has the Ready; the
    sync must wait for it all the same, or its SYNC overtakes the COMMIT and
    the follower answers the sync before the write."""
    s = sim(mode)
    leader = s.leader()
    f, _ = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"0")
    b = open_session(s, f)
    s.paused.add((f.id, leader.id))
    w = b.submit(Op.setData, S.SetDataRequest("/x", b"1", -1))
    y = b.submit(Op.sync, S.SyncRequest("/x"))
    s.settle()
    assert [p.type for p in in_one_read(s, f.id, leader.id)] == [m.REQUEST, m.REQUEST]
    replies = b.replies()
    assert [r[0].xid for r in replies] == [w, y]
    assert all(r[0].err == 0 for r in replies)


@pytest.mark.parametrize("mode", MODES)
def test_a_follower_reads_a_sync_and_a_later_commit_together(mode: str) -> None:
    """A session's sync, then its setData: the leader answers the sync at once,
    then proposes and (with the other follower) commits the write. The first
    follower reads the SYNC, the PROPOSAL and the COMMIT at once: the sync is
    answered first, though the batch's commits are applied in one run. (With
    the setting everywhere, the write waits on the follower for the sync's
    read point instead: it reaches the leader only after the SYNC.)"""
    s = sim(mode)
    leader = s.leader()
    f, _ = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"0")
    b = open_session(s, f)
    s.paused.add((leader.id, f.id))
    y = b.submit(Op.sync, S.SyncRequest("/x"))
    w = b.submit(Op.setData, S.SetDataRequest("/x", b"1", -1))
    s.settle()
    assert b.replies() == []
    types = [p.type for p in in_one_read(s, leader.id, f.id)]
    if mode == "linear":
        assert m.SYNC in types and m.COMMIT not in types, types
    else:
        assert m.SYNC in types and types.index(m.SYNC) < types.index(m.COMMIT), types
    replies = b.replies()
    assert [r[0].xid for r in replies] == [y, w]
    assert all(r[0].err == 0 for r in replies)


def test_a_leader_cuts_a_batch_at_a_sync_behind_requests() -> None:
    """The Zab level alone: what comes from the sync on is left for the next
    step, and what comes before it is handled in this one."""
    s = sim("plain")
    leader = s.leader()
    f, _ = s.followers()
    peer: Peer = leader.peer
    write = m.QuorumPacket(m.REQUEST, -1, m.request_data(
        5, 1, Op.setData, S.SetDataRequest("/x", b"", -1).encode()), [])
    sync = m.QuorumPacket(m.REQUEST, -1, m.request_data(5, 2, Op.sync,
                                                        S.SyncRequest("/x").encode()), [])
    ready = peer.step(ev.Messages(f.id, [sync, write, sync, write]), s.now)
    assert [d for _, d, _ in ready.requests] == [write.data]
    assert ready.resume == (f.id, [sync, write])
    assert ready.send == [(f.id, m.packet(m.SYNC, 0))]  # the first: nothing before it


def test_a_learners_client_sync_does_not_wait_for_a_read_round() -> None:
    """A leader with the setting and a follower without it (or an Apache
    ZooKeeper follower): the follower's client sync waits for what was in
    flight, as in ZooKeeper, not for a confirmation round. Here a round is in
    flight (for a read of the leader's own client) when the sync comes, and
    the session's next write commits before the next round could: the SYNC
    must still leave before that write's COMMIT."""
    s = sim("mixed")
    leader = s.leader()
    f, g = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"0")
    b = open_session(s, f)
    s.paused.add((g.id, leader.id))  # g echoes no round and acks nothing for now
    s.paused.add((leader.id, f.id))  # what f gets piles up
    r = a.submit(Op.getData, S.GetDataRequest("/x", False))  # starts a round
    s.settle()
    y = b.submit(Op.sync, S.SyncRequest("/x"))
    w = b.submit(Op.setData, S.SetDataRequest("/x", b"1", -1))
    s.settle()
    s.paused.discard((g.id, leader.id))  # the round's echo, then the write's ACK
    s.settle()
    assert [h.xid for h, _ in a.replies()] == [r]
    in_one_read(s, leader.id, f.id)
    assert [h.xid for h, _ in b.replies()] == [y, w]


def test_a_read_cut_many_times() -> None:
    """A read that holds many write+sync pairs is cut at every sync (on the
    leader), and one that holds their COMMITs and SYNCs at every COMMIT after
    a SYNC (on the follower): the rest is stepped in a loop, not by recursion
    (a 64 KiB read holds thousands of packets), and every answer keeps its
    place."""
    s = sim("plain")
    leader = s.leader()
    f, _ = s.followers()
    a = open_session(s, leader)
    create(s, a, "/x", b"0")
    b = open_session(s, f)
    s.paused.add((f.id, leader.id))
    xids = []
    for i in range(1500):
        xids.append(b.submit(Op.setData, S.SetDataRequest("/x", b"%d" % i, -1)))
        xids.append(b.submit(Op.sync, S.SyncRequest("/x")))
    s.settle()
    s.paused.add((leader.id, f.id))
    assert len(in_one_read(s, f.id, leader.id)) == 3000
    assert b.replies() == []
    types = [p.type for p in in_one_read(s, leader.id, f.id)]
    assert types.count(m.SYNC) == 1500 and types.count(m.COMMIT) == 1500, types[:8]
    replies = b.replies()
    assert [h.xid for h, _ in replies] == xids
    assert all(h.err == 0 for h, _ in replies)
