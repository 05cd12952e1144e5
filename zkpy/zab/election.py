"""Fast leader election (ZooKeeper's FastLeaderElection), as a pure state machine.

Every peer votes for the best candidate it has heard of, best meaning the
largest (peer epoch, last zxid, server id); it broadcasts its vote whenever it
changes, and adopts a vote when a majority of the voters hold the same one
(and nothing better arrives within ``finalize_wait``; zkpy skips that wait
when every voter holds it, since nothing better can come). Servers outside
the voters (observers, servers joining or removed by a reconfig) have no
vote: they are answered with ours and follow what the voters settle on,
never lead. Votes carry the
election round ("logical clock"): a peer seeing a newer round drops what it
had collected and joins it. A peer that comes back while the others already
follow a leader learns it from their replies: a peer that is not looking
answers every looking peer with the leader it follows.

Why this is enough for safety: a committed transaction is on a majority, so
the winner, being at least as up to date as a majority, has it (Zab's
discovery phase then makes the new epoch start from the winner's history).

Pure: ``start``, ``receive`` and ``tick`` take ``now`` (ms) and return the
notifications to send as (destination id, Notification) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

LOOKING: Final = 0
FOLLOWING: Final = 1
LEADING: Final = 2
OBSERVING: Final = 3


@dataclass(frozen=True)
class Notification:
    """What one peer tells another about its vote (FastLeaderElection.Notification)."""

    sender: int
    state: int
    leader: int
    zxid: int
    round: int  # electionEpoch, the logical clock
    peer_epoch: int


def better(new: tuple[int, int, int], cur: tuple[int, int, int]) -> bool:
    """ZooKeeper's totalOrderPredicate on (peer epoch, zxid, server id)."""
    return new > cur


Send = list[tuple[int, Notification]]


class Election:
    def __init__(self, my_id: int, voters: frozenset[int], last_zxid: int, epoch: int,
                 finalize_wait: int = 200, resend_interval: int = 2000) -> None:
        self.my_id = my_id
        self.voters = voters
        self.last_zxid = last_zxid
        self.epoch = epoch
        self.finalize_wait = finalize_wait
        self.resend_interval = resend_interval
        self.round = 0
        self.state = LOOKING
        self.proposal = (epoch, last_zxid, my_id)  # (peer epoch, zxid, leader)
        self.received: dict[int, Notification] = {}  # this round's votes of looking peers
        self.settled: dict[int, Notification] = {}  # votes of peers that follow or lead
        self.decided: Notification | None = None
        self._finalize_at: int | None = None
        self._resend_at = 0

    # -- helpers ------------------------------------------------------------------

    def _quorum(self, count: int) -> bool:
        return count * 2 > len(self.voters)

    def _my_vote(self) -> Notification:
        epoch, zxid, leader = self.proposal
        return Notification(self.my_id, self.state, leader, zxid, self.round, epoch)

    def _broadcast(self) -> Send:
        vote = self._my_vote()
        return [(peer, vote) for peer in sorted(self.voters) if peer != self.my_id]

    def _agreeing(self, votes: dict[int, Notification], leader: int, zxid: int,
                  round_: int, peer_epoch: int) -> int:
        return sum(1 for s, v in votes.items() if s in self.voters
                   and (v.leader, v.zxid, v.round, v.peer_epoch) == (leader, zxid, round_, peer_epoch))

    # -- inputs -------------------------------------------------------------------

    def start(self, now: int) -> Send:
        """Begin (or restart) looking: a new round, voting for ourselves."""
        self.round += 1
        self.state = LOOKING
        self.decided = None
        self.proposal = (self.epoch, self.last_zxid, self.my_id)
        self.received = {self.my_id: self._my_vote()}
        self.settled = {}
        self._finalize_at = None
        if self._quorum(len(self.received.keys() & self.voters)):  # an ensemble of one
            self._finalize_at = now + self.finalize_wait
        self._resend_at = now + self.resend_interval
        return self._broadcast()

    def receive(self, n: Notification, now: int) -> Send:
        if n.sender not in self.voters:
            # An observer, a server joining by reconfig or one removed from the
            # membership: it has no vote, but learns whom we follow from our
            # answer (FastLeaderElection answers a non-voter with its current vote).
            return [(n.sender, self._my_vote())] if n.state == LOOKING else []
        if self.state != LOOKING:
            # Tell a looking peer whom we follow, so a returning server finds the leader.
            return [(n.sender, self._my_vote())] if n.state == LOOKING else []
        if n.state == LOOKING:
            return self._from_looking(n, now)
        return self._from_settled(n)

    def _from_looking(self, n: Notification, now: int) -> Send:
        out: Send = []
        if n.round > self.round:
            self.round = n.round
            self.received = {}
            mine = (self.epoch, self.last_zxid, self.my_id)
            theirs = (n.peer_epoch, n.zxid, n.leader)
            self.proposal = theirs if better(theirs, mine) else mine
            self._finalize_at = None
            out = self._broadcast()
        elif n.round < self.round:
            # Bring the laggard to our round (a non-voter's round matters to no one,
            # and answering the answers of voters would ping-pong).
            return [(n.sender, self._my_vote())] if self.my_id in self.voters else []
        elif better((n.peer_epoch, n.zxid, n.leader), self.proposal):
            self.proposal = (n.peer_epoch, n.zxid, n.leader)
            self._finalize_at = None
            out = self._broadcast()
        self.received[n.sender] = n
        self.received[self.my_id] = self._my_vote()
        epoch, zxid, leader = self.proposal
        agreeing = self._agreeing(self.received, leader, zxid, self.round, epoch)
        if agreeing == len(self.voters):
            # zkpy: every voter holds this vote, so no better one can come (each
            # voted for the best it had seen, itself included): decide without the
            # finalize wait, which only guards a quorum against a late better vote.
            return out + self._decide()
        if self._quorum(agreeing):
            if self._finalize_at is None:
                self._finalize_at = now + self.finalize_wait
        else:
            self._finalize_at = None
        return out

    def _from_settled(self, n: Notification) -> Send:
        self.settled[n.sender] = n
        if n.round == self.round:
            self.received[n.sender] = n
        support = self._agreeing_leader(self.settled, n.leader)
        if self._quorum(support) and self._leader_known(n):
            self.round = n.round
            self.proposal = (n.peer_epoch, n.zxid, n.leader)
            return self._decide()
        return []

    def _agreeing_leader(self, votes: dict[int, Notification], leader: int) -> int:
        return sum(1 for s, v in votes.items() if s in self.voters and v.leader == leader)

    def _leader_known(self, n: Notification) -> bool:
        """checkLeader: follow only a leader that says it leads; lead on others'
        word only if they settled in our own round."""
        if n.leader == self.my_id:
            return n.round == self.round
        lead = self.settled.get(n.leader)
        return lead is not None and lead.state == LEADING

    def tick(self, now: int) -> Send:
        if self.state != LOOKING:
            return []
        if self._finalize_at is not None and now >= self._finalize_at:
            return self._decide()
        if now >= self._resend_at:
            self._resend_at = now + self.resend_interval
            return self._broadcast()
        return []

    def _decide(self) -> Send:
        epoch, zxid, leader = self.proposal
        if leader == self.my_id and self.my_id not in self.voters:
            # Without a vote we may follow, never lead: keep looking.
            self._finalize_at = None
            return []
        self.state = LEADING if leader == self.my_id else FOLLOWING
        self.decided = Notification(self.my_id, self.state, leader, zxid, self.round, epoch)
        self._finalize_at = None
        # Tell everyone: looking peers learn the outcome faster.
        return self._broadcast()

    def settle(self, leader: int) -> None:
        """Take ``leader`` without an election (QuorumPeer.updateServerState after
        a committed reconfig named it): lead if it is us, follow it otherwise."""
        self.state = LEADING if leader == self.my_id else FOLLOWING
        self.proposal = (self.epoch, self.last_zxid, leader)
        self.decided = Notification(self.my_id, self.state, leader, self.last_zxid, self.round,
                                    self.epoch)
        self._finalize_at = None

    def next_deadline(self) -> int | None:
        if self.state != LOOKING:
            return None
        if self._finalize_at is not None:
            return min(self._finalize_at, self._resend_at)
        return self._resend_at
