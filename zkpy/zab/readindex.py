"""The leader's side of linearizable reads: read points confirmed by a quorum.

Opt-in (``Peer.linear_reads``, from ``linearizableReads=true``). This is etcd's
ReadIndex in Zab's vocabulary. A read point is asked for with ``ReadIndex``
(the leader's own clients) or with a learner's sync (REQUEST of OpCode.sync:
a member's clients, batched by ``zkpy.server.linear_reads``). The leader
answers it once

1. a *confirmation round* started after the request arrived has been
   answered by a quorum of voters (the leader counts itself): the round is a
   PING whose zxid field carries the round number, and every learner, zkpy's
   and Apache ZooKeeper's alike (``Learner.ping``), echoes that field in its
   reply. A voter that answers a PING sent at time t still followed us, in
   our epoch, after t; if a quorum did, no later epoch had been established
   before t (a new leader needs a quorum that accepted its epoch, and a
   follower that accepted a newer epoch has left ours for good), so nothing
   committed before t is missing from our committed prefix. A leader that
   was deposed without knowing it never completes a round: its reads wait
   until it steps down (syncLimit), and then fail with the connection;
2. for a client's own sync (a session id other than 0), the newest proposal
   in flight when it arrived has committed too (Leader.processSync, as today).

A client's sync from a learner (an Apache ZooKeeper member, or a zkpy member
without the setting; a zkpy member with it sends read points instead) waits
for that commit and for the learner's earlier requests, not for a round: its
SYNC must leave before the COMMIT of a write the same session sent after it,
which a round could let overtake it (Leader.processSync's own order).

The answer is ``Ready.read_points`` for our own clients (the tree already
holds everything committed) and a SYNC for a learner: it leaves after the
COMMITs (or INFORMs) of everything committed so far on the same FIFO
connection, so the learner has applied its read point when the SYNC arrives.
Answers to one learner (and to us) keep the order of its requests, so its
SYNCs still answer its syncs oldest first.

Batching: one round at a time. A request that arrives while a round is in
flight waits for the next one, which starts when the current one completes:
under load every round covers every request that came during the previous
one. Every tick's PING carries the newest round's number, so a learner that
was syncing when a round started answers it at the next tick.

No clock: a lease would save the round on the leader, but it needs bounded
clock drift and followers that promise not to follow anybody else for the
lease's length; a restarted follower (a kill) forgets its promise, and Apache
ZooKeeper's learners make none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zkpy.zab import messages as m

if TYPE_CHECKING:
    from zkpy.zab.leading import Leading


@dataclass(slots=True)
class _Waiter:
    round: int  # the first round that may answer it (started after it arrived)
    commit: int  # the zxid that must be committed first (0: none)
    dest: int  # who asked: a learner, or the leader itself


class ReadRounds:
    def __init__(self, leading: Leading) -> None:
        self.leading = leading
        self.started = 0  # rounds started; the zxid of the PINGs of the newest
        self.confirmed = 0  # the newest round a quorum of voters answered
        self.acks: dict[int, int] = {}  # voter -> the newest round it answered
        self.waiters: deque[_Waiter] = deque()
        self.rounds_confirmed = 0  # for the four-letter words and the tests

    # -- requests --------------------------------------------------------------------

    def ask(self, dest: int, commit: int = 0, confirm: bool = True) -> None:
        """A read point for ``dest`` (our own id for our clients); without
        ``confirm``, only ``commit`` (a client's sync) and ``dest``'s order."""
        if not confirm:
            self.waiters.append(_Waiter(0, commit, dest))
            self.answer()
            return
        self.waiters.append(_Waiter(self.started + 1, commit, dest))
        if self.confirmed == self.started:
            self._start_round()

    def forget(self, sid: int) -> None:
        """A learner's connection is gone: its requests with it (its next SYNC
        must not answer a request its new connection never made)."""
        if any(w.dest == sid for w in self.waiters):
            self.waiters = deque(w for w in self.waiters if w.dest != sid)

    # -- rounds ----------------------------------------------------------------------

    def ping_zxid(self) -> int:
        """What a PING carries in its zxid field: the newest round."""
        return self.started

    def acked(self, sid: int, round_: int) -> None:
        """A learner echoed the PING of ``round_``."""
        if round_ <= self.acks.get(sid, 0) or round_ > self.started:
            return  # an old echo, or a number we never sent
        self.acks[sid] = round_
        if round_ > self.confirmed:
            self._confirm()

    def _start_round(self) -> None:
        lead = self.leading
        p = lead.peer
        self.started += 1
        ping = m.packet(m.PING, self.started)
        voters = self._voter_sets()
        for sid in lead.followers():
            if any(sid in v for v in voters):
                p.send(sid, ping)
        self._confirm()  # an ensemble of one voter confirms at once

    def _voter_sets(self) -> list[frozenset[int]]:
        p = self.leading.peer
        pending = self.leading.pending_config
        if pending is None:
            return [p.voters]
        # While a reconfig is in flight a new leader may need a quorum of either
        # membership: the round must hear from a quorum of both.
        return [p.voters, pending[1].voters]

    def _quorum_round(self, voters: Iterable[int]) -> int:
        me = self.leading.peer.my_id
        rounds = sorted((self.started if sid == me else self.acks.get(sid, 0)
                         for sid in voters), reverse=True)
        return rounds[len(rounds) // 2] if rounds else 0

    def _confirm(self) -> None:
        best = min(self._quorum_round(v) for v in self._voter_sets())
        if best <= self.confirmed:
            return
        self.rounds_confirmed += best - self.confirmed
        self.confirmed = best
        self.answer()
        if self.confirmed == self.started and any(w.round > self.confirmed
                                                   for w in self.waiters):
            self._start_round()  # the requests that came during the round just done

    # -- answers ---------------------------------------------------------------------

    def answer(self) -> None:
        """Answer every request whose round is confirmed and whose commit is done,
        oldest first per destination (after commits advance, too)."""
        lead = self.leading
        p = lead.peer
        me = p.my_id
        blocked: set[int] = set()
        keep: deque[_Waiter] = deque()
        for w in self.waiters:
            if w.dest in blocked or w.round > self.confirmed or w.commit > lead.committed:
                blocked.add(w.dest)
                keep.append(w)
            elif w.dest == me:
                p.ready().read_points += 1
            elif w.dest in lead.learners:
                p.send(w.dest, _SYNC)
        self.waiters = keep


# Leader.sendSync: a SYNC carries nothing.
_SYNC = m.packet(m.SYNC, 0)
