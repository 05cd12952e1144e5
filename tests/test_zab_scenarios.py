"""Hand-scripted Zab scenarios: one per planted bug, each caught deterministically.

The seeded simulation (``tests/test_zab_sim.py``) finds a planted bug only if
some seed happens to crash the right peer between the right two steps. Here
the schedule is written out: every delivery, every disk sync and every crash
is a line of the test, so the one interleaving that exposes each mistake runs
every time. Each scenario runs twice: with the correct ``Peer`` it must pass
(and the ensemble must converge afterwards); with the mutant, a subclass of
``Peer`` carrying one mistake, ``zkpy.testing.zabcheck.Checker`` must raise
the ``Violation`` named in the test.

``Script`` is the adapter: it carries every Ready out as ``zkpy.zab.peer``
prescribes, but nothing happens by itself. Packets wait on their link until
``deliver`` / ``settle``; persist ops wait in the peer's disk queue until
``sync``; a ``crash`` keeps only what was synced, and loses the peer's
in-flight packets and every unsynced ``send_after_persist``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable

import pytest

from zkpy.testing.zabcheck import Checker, Entry, Violation
from zkpy.testing.zabsim import (
    MemDisk,
    TreeApp,
    decode_state,
    encode_state,
    report_leader_progress,
    with_state,
)
from zkpy.zab import following as fl
from zkpy.zab import leading as ld
from zkpy.zab import messages as m
from zkpy.zab.driver import Driver, Durable
from zkpy.zab.election import FOLLOWING as E_FOLLOWING
from zkpy.zab.election import LEADING as E_LEADING
from zkpy.zab.election import LOOKING as E_LOOKING
from zkpy.zab.election import Notification
from zkpy.zab.events import (
    LOOKING,
    ConnectionLost,
    Event,
    Message,
    PersistOp,
    Propose,
    Start,
    StateSent,
    Tick,
    Vote,
)
from zkpy.zab.membership import QuorumConfig
from zkpy.zab.peer import Peer

A = b"A"
A_ZXID = m.make_zxid(1, 1)  # the first write of epoch 1

# -- the mutants ------------------------------------------------------------------------


class AckBeforePersist(Peer):
    """Planted bug: a follower ACKs a proposal before its log write is synced."""

    def send_durable(self, dest: int, pkt: m.QuorumPacket) -> None:
        if pkt.type == m.ACK and self.following is not None:
            self.send(dest, pkt)
        else:
            super().send_durable(dest, pkt)


class LeaderAcksBeforePersist(Peer):
    """Planted bug: the leader counts its own ACK of a proposal before the
    proposal is synced to its own log (so it may commit on one follower's ACK)."""

    def _on_propose(self, event: Propose) -> None:
        super()._on_propose(event)
        assert self.leading is not None
        self.leading.logged = self.history.last_zxid  # "on disk" before the sync


class AckNewLeaderBeforeSync(Peer):
    """Planted bug (ZOOKEEPER-3911): a follower ACKs NEWLEADER before the txns
    it took in during synchronization are synced to its log."""

    def send_durable(self, dest: int, pkt: m.QuorumPacket) -> None:
        f = self.following
        if pkt.type == m.ACK and f is not None and f.phase == fl.SYNCING:
            self.send(dest, pkt)
        else:
            super().send_durable(dest, pkt)


class _NoAheadCheck(ld.Leading):
    def _ack_epoch(self, learner: ld.Learner, pkt: m.QuorumPacket) -> None:
        # Leading._ack_epoch without "follower is ahead of the leader".
        try:
            reported = m.read_int(pkt.data)
        except ValueError:
            reported = -2
        if learner.phase != ld.EPOCH_SENT or reported < -1:
            self._drop(learner.sid)
            return
        learner.last_zxid = pkt.zxid
        learner.phase = ld.EPOCH_ACKED
        if reported != -1:
            self.epoch_acks.add(learner.sid)
        if self.sync_started:
            self._sync(learner)
        else:
            self._maybe_start_sync()


class NoAheadCheck(Peer):
    """Planted bug: the leader takes ACKEPOCHs from followers whose
    (currentEpoch, lastZxid) is more recent than its own, and syncs them."""

    def _new_leading(self) -> ld.Leading:
        return _NoAheadCheck(self)


# -- the scripted adapter -------------------------------------------------------------------


class Script:
    """Peers 1..size, driven one explicit step at a time (see the module docstring)."""

    def __init__(self, factory: type[Peer] = Peer, size: int = 3) -> None:
        self.factory = factory
        self.ids = list(range(1, size + 1))
        self.now = 0
        self.check = Checker()
        self.disks = {i: MemDisk() for i in self.ids}
        self.trees: dict[int, list[Entry]] = {i: [] for i in self.ids}
        self.peers: dict[int, Peer] = {}
        self.drivers: dict[int, Driver] = {}
        self.down: set[int] = set()
        self.links: dict[tuple[int, int], deque[m.QuorumPacket]] = {}
        self.conn: dict[frozenset[int], int] = {}
        # per peer: unsynced batches of (ops, [(dest, packet, connection id)])
        self.pending: dict[int, list[tuple[list[PersistOp], list[Durable]]]] = {
            i: [] for i in self.ids}
        self.votes: list[tuple[int, int, Notification]] = []
        self.local: deque[tuple[int, Event]] = deque()
        for i in self.ids:
            self._boot(i)

    # -- carrying Readies out ---------------------------------------------------------------

    def _boot(self, i: int) -> None:
        disk = self.disks[i]
        self.trees[i] = decode_state(disk.snapshot[1])
        self.check.on_restart(i, self.trees[i])

        def snapshot() -> bytes:
            return encode_state(self.trees[i])

        peer = self.factory(i, frozenset(self.ids), disk.state(), snapshot,
                            sync_limit=1000, init_limit=1000, log_window=8,
                            finalize_wait=50, resend_interval=10_000)
        self.peers[i] = peer
        self.drivers[i] = Driver(peer, _ScriptLinks(self, i), _ScriptDisk(self, i),
                                 TreeApp(self.check, self.trees, i, peer),
                                 lambda: report_leader_progress(self.check, self.trees[i], i,
                                                                self.peers[i]))
        self.step(i, Start())

    def step(self, i: int, event: Event) -> None:
        self.local.append((i, event))
        self._drain()

    def _drain(self) -> None:
        """Step the events the world queued (connection losses), in order."""
        while self.local:
            node, ev = self.local.popleft()
            if node not in self.down:
                self.drivers[node].step(ev, self.now)

    def _conn(self, a: int, b: int) -> int:
        return self.conn.get(frozenset((a, b)), 0)

    def _send(self, src: int, dest: int, pkt: m.QuorumPacket) -> None:
        if dest not in self.down:
            self.links.setdefault((src, dest), deque()).append(pkt)

    def _close(self, a: int, b: int) -> None:
        """The quorum connection a-b closes: in-flight packets die, b is told."""
        self.conn[frozenset((a, b))] = self._conn(a, b) + 1
        self.links.pop((a, b), None)
        self.links.pop((b, a), None)
        self.local.append((b, ConnectionLost(a)))

    # -- the script's verbs --------------------------------------------------------------------

    def deliver(self, src: int, dst: int) -> int:
        """Deliver every packet waiting on the link src -> dst; how many."""
        q = self.links.pop((src, dst), deque())
        for pkt in q:
            self.step(dst, Message(src, pkt))
        return len(q)

    def sync(self, i: int) -> bool:
        """Peer i's disk syncs everything handed to it; the durable sends go out."""
        batches, self.pending[i] = self.pending[i], []
        disk = self.disks[i]
        for ops, _after in batches:
            for op in ops:
                disk.apply(op)
        if batches:
            after = [send for _ops, sends in batches for send in sends]
            self.drivers[i].persisted(after, disk.last_zxid(), self.now)
            self._drain()
        return bool(batches)

    def crash(self, i: int) -> None:
        """Peer i loses power: unsynced ops and its in-flight packets are gone."""
        self.down.add(i)
        self.pending[i] = []
        for other in self.ids:
            if other != i:
                self.links.pop((i, other), None)
                self.links.pop((other, i), None)
                self.conn[frozenset((i, other))] = self._conn(i, other) + 1
                self.local.append((other, ConnectionLost(i)))
        self.votes = [v for v in self.votes if i not in v[:2]]
        self._drain()

    def restart(self, i: int) -> None:
        self.down.discard(i)
        self._boot(i)

    def propose(self, leader: int, txn: bytes) -> int:
        zxid = self.peers[leader].next_zxid
        self.step(leader, Propose(txn))
        return zxid

    def elect(self, members: Iterable[int]) -> None:
        """Run FastLeaderElection among ``members`` (votes to anyone else are
        lost) until none of them is looking."""
        group = set(members)
        for _ in range(200):
            while self.votes:
                batch, self.votes = self.votes, []
                for src, dst, note in batch:
                    if src in group and dst in group:
                        self.step(dst, Vote(src, note))
            looking = [i for i in sorted(group) if self.peers[i].role == LOOKING]
            if not looking:
                return
            self.now += 50
            for i in looking:
                self.step(i, Tick())
        raise AssertionError("no leader elected")

    def settle(self, members: Iterable[int], sync: Iterable[int] | None = None) -> None:
        """Deliver packets among ``members`` and sync the disks of ``sync``
        (default: all of them) until nothing moves."""
        group = set(members)
        syncing = group if sync is None else set(sync)
        moved = True
        while moved:
            moved = False
            for src in sorted(group):
                for dst in sorted(group):
                    if src != dst and self.deliver(src, dst):
                        moved = True
            for i in sorted(syncing):
                if self.sync(i):
                    moved = True

    def converge(self) -> None:
        """Everyone up, elect, sync, and check the safety of the end state."""
        for i in self.ids:
            if i in self.down:
                self.restart(i)
        for _ in range(20):
            self.elect(self.ids)
            self.settle(self.ids)
            if all(p.role != LOOKING for p in self.peers.values()):
                break
        leader = next(i for i in self.ids if self.peers[i].can_propose)
        assert all(self.peers[i].leader_id == leader for i in self.ids)
        self.propose(leader, b"after")
        self.settle(self.ids)
        assert len({tuple(t) for t in self.trees.values()}) == 1, self.trees
        self.check.check_converged(self.ids)

    def established_leader(self) -> int:
        self.elect(self.ids)
        self.settle(self.ids)
        leaders = [i for i in self.ids if self.peers[i].can_propose]
        assert leaders == [3], leaders  # FLE prefers the highest sid on a tie
        return 3


class _ScriptLinks:
    """Peer ``i``'s connections: packets wait on the script's links."""

    def __init__(self, s: Script, i: int) -> None:
        self.s = s
        self.i = i

    def send(self, dest: int, pkt: m.QuorumPacket, token: Hashable | None = None) -> None:
        if token is None or token == self.token(dest):
            self.s._send(self.i, dest, with_state(pkt, self.s.peers[self.i]))
            if pkt.type == m.SNAP and pkt.data is None:  # the state left with it
                self.s.local.append((self.i, StateSent(dest)))

    def token(self, dest: int) -> Hashable | None:
        return self.s._conn(self.i, dest)

    def flush(self) -> None:
        pass

    def disconnect(self, dest: int, why: str = "") -> None:
        self.s._close(self.i, dest)

    def vote(self, dest: int, notification: Notification) -> None:
        self.s.votes.append((self.i, dest, notification))

    def configure(self, config: QuorumConfig) -> None:
        pass


class _ScriptDisk:
    """Peer ``i``'s disk: batches wait until the script says ``sync``."""

    def __init__(self, s: Script, i: int) -> None:
        self.s = s
        self.i = i

    def submit(self, ops: list[PersistOp], after: list[Durable]) -> None:
        self.s.pending[self.i].append((list(ops), after))


Scenario = Callable[[type[Peer]], Script]

# -- the scenarios -------------------------------------------------------------------------


def follower_acks_before_persist(factory: type[Peer]) -> Script:
    """The write A is ACKed by a follower whose disk never got it.

    Epoch 1: 3 leads 1 and 2. 3 proposes A and syncs it (its own ACK). The
    PROPOSAL reaches only 1, which appends A; before 1's disk syncs, 1 and 3
    lose power. A correct 1 has not ACKed yet, so A was never acknowledged.
    The mutant ACKed at once: 3 had a quorum {3, 1} and committed A. Then 1
    (A gone from its disk) and 2 (never saw A) elect 2, which establishes
    epoch 2 without A: the acknowledged write is lost.
    """
    s = Script(factory)
    leader = s.established_leader()
    assert s.propose(leader, A) == A_ZXID
    s.deliver(3, 1)  # PROPOSAL A reaches 1 only
    s.sync(3)  # the leader's own ACK
    s.deliver(1, 3)  # a correct 1 sends nothing yet
    assert s.peers[1].history.txn(A_ZXID) == A and s.disks[1].log == []
    s.crash(1)
    s.crash(3)
    s.restart(1)
    s.elect({1, 2})
    s.settle({1, 2})  # 2 establishes epoch 2
    assert s.peers[2].can_propose
    return s


def leader_commits_before_persist(factory: type[Peer]) -> Script:
    """The write A is committed by a leader whose own disk never got it.

    Epoch 1: 3 leads 1 and 2. 3 proposes A. 1 receives, syncs and ACKs it.
    The mutant 3 counted its own ACK before syncing, so 1's ACK made a quorum
    {3, 1}: 3 committed and applied A. Then 3 loses power before its disk
    synced A, and 1 is down too. 3 restarts without A and, with 2 (which never
    saw A), establishes epoch 2: the acknowledged, committed A is lost. The
    correct 3 waits for its disk, so 1's ACK alone is no quorum.
    """
    s = Script(factory)
    leader = s.established_leader()
    assert s.propose(leader, A) == A_ZXID
    s.deliver(3, 1)
    s.sync(1)  # 1's ACK of A leaves after its disk synced A
    s.deliver(1, 3)
    assert s.disks[3].log == [] and s.disks[1].log == [(A_ZXID, A)]
    s.crash(3)  # 3's disk never synced A
    s.crash(1)
    s.restart(3)
    s.elect({2, 3})
    s.settle({2, 3})
    assert s.peers[3].can_propose
    return s


def follower_acks_newleader_before_sync(factory: type[Peer]) -> Script:
    """ZOOKEEPER-3911: NEWLEADER is ACKed before the synced txns are on disk.

    Epoch 1: 3 leads 1 and 2; 3 proposes A, syncs it, and loses power before
    the PROPOSAL leaves. 2 goes down too. 3 restarts with A in its log and,
    being more up to date, is elected by {1, 3}. Synchronizing epoch 2, 3
    sends 1 a DIFF with A and NEWLEADER; 1 appends A. The mutant 1 ACKs
    NEWLEADER before A is synced; with its own ACK, 3 has a quorum, establishes
    epoch 2 and commits A. Then 1 loses power (A was never synced) and 3 is
    down: 1 and 2 elect 2, which establishes epoch 3 without A. The correct 1
    ACKs NEWLEADER only after A is synced, so 3 never established.
    """
    s = Script(factory)
    leader = s.established_leader()
    assert s.propose(leader, A) == A_ZXID
    s.sync(3)
    s.crash(3)  # the PROPOSAL dies in flight
    s.crash(2)
    s.restart(3)
    s.elect({1, 3})
    assert s.peers[3].leading is not None
    s.settle({1, 3}, sync={3})  # 1's ACKEPOCH waits for its acceptedEpoch
    s.sync(1)  # acceptedEpoch 2 is durable; ACKEPOCH goes
    s.settle({1, 3}, sync={3})  # DIFF, PROPOSAL A, NEWLEADER; 1 never syncs
    assert s.peers[1].history.txn(A_ZXID) == A and s.disks[1].log == []
    s.crash(1)
    s.crash(3)
    s.restart(1)
    s.restart(2)
    s.elect({1, 2})
    s.settle({1, 2})
    assert s.peers[2].can_propose
    return s


def leader_behind_a_follower(factory: type[Peer]) -> Script:
    """A leader whose history lacks a committed txn meets a follower that has it.

    Epoch 1: 3 leads 1 and 2; A is ACKed by 1 and 3 and committed by 3; the
    COMMIT to 1 dies with 3, which loses power. FastLeaderElection would now
    elect 1 (it holds A); this script hands the decision to 2 instead, with
    forged notifications (a stale vote from 1 for 2, and 2 LEADING / 3
    FOLLOWING 2 told to 1), so that the discovery phase alone must stop it.
    1's ACKEPOCH reports (currentEpoch 1, lastZxid A), more recent than 2's
    (1, 0). The correct 2 refuses to lead ("follower is ahead of the
    leader") and a real election then makes 1 lead with A. The mutant 2 sends
    1 a TRUNC that drops A and establishes epoch 2 without it.
    """
    s = Script(factory)
    leader = s.established_leader()
    assert s.propose(leader, A) == A_ZXID
    s.deliver(3, 1)
    s.sync(1)
    s.sync(3)
    s.deliver(1, 3)  # quorum {3, 1}: 3 commits A
    assert s.trees[3] == [(A_ZXID, A)]
    s.crash(3)  # its COMMIT to 1 dies in flight; 1 and 2 look
    s.votes.clear()
    p1, p2 = s.peers[1], s.peers[2]
    r = p2.election.round
    s.step(2, Vote(1, Notification(1, E_LOOKING, 2, p2.last_zxid, r, p2.current_epoch)))
    while p2.role == LOOKING:
        s.now += 50
        s.step(2, Tick())
    s.votes.clear()
    r = p1.election.round
    s.step(1, Vote(2, Notification(2, E_LEADING, 2, p2.last_zxid, r, p2.current_epoch)))
    s.step(1, Vote(3, Notification(3, E_FOLLOWING, 2, p2.last_zxid, r, p2.current_epoch)))
    assert p1.following is not None and p1.following.leader == 2
    s.settle({1, 2})
    if p2.role == LOOKING:  # the correct 2 refused; now a real election
        assert "ahead of the leader" in p2.last_reason
        s.elect({1, 2})
        s.settle({1, 2})
    return s


CASES = [
    # scenario, mutant, (leader, epoch) that establishes without A, A acked by the correct run
    (follower_acks_before_persist, AckBeforePersist, (2, 2), False),
    (leader_commits_before_persist, LeaderAcksBeforePersist, (3, 2), False),
    (follower_acks_newleader_before_sync, AckNewLeaderBeforeSync, (2, 3), False),
    (leader_behind_a_follower, NoAheadCheck, (2, 2), True),
]
IDS = [c[1].__name__ for c in CASES]


@pytest.mark.parametrize(("scenario", "mutant", "loser", "acked"), CASES, ids=IDS)
def test_the_correct_peer_passes(scenario: Scenario, mutant: type[Peer],
                                 loser: tuple[int, int], acked: bool) -> None:
    s = scenario(Peer)
    # Without the mistake, A is acknowledged only where a quorum really holds it.
    assert (A_ZXID in s.check.acked) == acked
    s.converge()
    assert (A_ZXID, A) in s.trees[1] if acked else (A_ZXID, A) not in s.trees[1]


@pytest.mark.parametrize(("scenario", "mutant", "loser", "acked"), CASES, ids=IDS)
def test_the_mutant_loses_an_acknowledged_write(scenario: Scenario, mutant: type[Peer],
                                                loser: tuple[int, int], acked: bool) -> None:
    leader, epoch = loser
    with pytest.raises(Violation, match=rf"^acknowledged txn 0x100000001 b'A' lost: "
                                        rf"leader {leader} established epoch {epoch} without it$"):
        scenario(mutant)
