"""The leader's side of Zab: discovery, synchronization, broadcast, liveness.

ZooKeeper's ``Leader.lead`` plus one ``LearnerHandler`` per learner, folded
into one single-threaded state machine. Per learner (``Learner.phase``):

- INFO: FOLLOWERINFO received; the new epoch is not chosen yet.
- EPOCH_SENT: LEADERINFO sent; waiting for ACKEPOCH.
- EPOCH_ACKED: waiting for a quorum of ACKEPOCHs before syncing.
- SYNCING: DIFF/TRUNC/SNAP, the history and NEWLEADER sent; from here on it
  gets new PROPOSALs and COMMITs (an observer: an INFORM per commit) and PINGs.
- SYNCED: it acked NEWLEADER (and got UPTODATE once we are established).

The conversation is ZooKeeper 3.8's, packet for packet (LearnerHandler.run
and syncFollower, Leader.startForwarding): nothing but LEADERINFO and the
sync stream reaches a learner before its sync (a Learner exits on anything
else, PING included); the committed part of the history goes as
PROPOSAL+COMMIT pairs, what is still outstanding as PROPOSALs alone (to
followers only); UPTODATE carries zxid -1; a learner's second ACK of the
NEWLEADER zxid (sent after UPTODATE) is ignored; REVALIDATE is answered with
whether the session is still alive (``Peer.revalidate``); a committed
reconfig goes out as COMMITANDACTIVATE / INFORMANDACTIVATE naming the
designated leader.

The leader itself counts as a voter everywhere: its acceptedEpoch, its
ACKEPOCH summary, its own ACK of NEWLEADER (a message to ``my_id`` released
only after its disk synced it) and of each proposal (its disk's
``Persisted``). A learner's ACKs of the proposals its sync carried come one
by one after its NEWLEADER ACK, as ZooKeeper's learners send them; an ACK of
z says the learner's log holds everything up to z (logs are written in
order), so who holds a proposal is kept as one watermark per voter.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from zkpy.jute.codec import JuteError
from zkpy.mypyc_compat import mypyc_attr
from zkpy.zab import membership
from zkpy.zab import messages as m
from zkpy.zab.events import Append, NotLeader, SaveEpoch
from zkpy.zab.readindex import ReadRounds

if TYPE_CHECKING:
    from zkpy.zab.peer import Peer

INFO = "info"
EPOCH_SENT = "epoch-sent"
EPOCH_ACKED = "epoch-acked"
SYNCING: Final = "syncing"
SYNCED: Final = "synced"
_FORWARDING: Final = (SYNCING, SYNCED)
_MAX_COUNTER: Final = 0xFFFFFFFF


class Learner:
    def __init__(self, sid: int, accepted_epoch: int, now: int, observer: bool = False) -> None:
        self.sid = sid
        # An observer (OBSERVERINFO) gets each commit as one INFORM once synced,
        # never PROPOSALs to acknowledge.
        self.observer = observer
        self.phase = INFO
        self.accepted_epoch = accepted_epoch
        self.last_zxid = 0
        self.last_heard = now
        # Our state is on its way to it (a SNAP's stream): it cannot answer yet.
        self.sending_state = False
        # A zkpy follower takes one COMMIT for a run of commits (messages.WATERMARKS);
        # ``commit_sent`` is the last it was sent.
        self.watermarks = False
        self.commit_sent = 0


@mypyc_attr(allow_interpreted_subclasses=True)  # tests plant bugs in subclasses
class Leading:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.learners: dict[int, Learner] = {}
        self.epoch = -1
        # Leader.lead: leaderStateSummary = (currentEpoch, lastProcessedZxid).
        self.summary = (peer.current_epoch, peer.history.last_zxid)
        self.epoch_acks: set[int] = set()
        self.sync_started = False
        self.newleader_acks: set[int] = set()
        self.established = False
        self.started = peer.ticks
        # Proposals not committed yet, in zxid order. Who holds each is kept as a
        # watermark per voter: the learners' highest ACK in ``acked``, ours in
        # ``logged`` (the disk's Persisted).
        self.outstanding: deque[int] = deque()
        self.acked: dict[int, int] = {}
        self.logged = 0
        self.counter = 0
        self.committed = 0
        # Within a batch of packets (``Peer._on_messages``) a run of learners'
        # ACKs decides commits once, at its end (``settle_acks``): an ACK only
        # raises a watermark, so committing after each one cost a walk of the
        # history and a trim per ACK, and a follower's synced batch is tens of
        # ACKs under load. Any other packet settles first, so what it does
        # still sees every commit the ACKs before it allowed.
        self.batching = False
        self._commit_due = False
        # Leader.pendingSyncs: learners' sync requests waiting for a proposal's commit.
        self.pending_syncs: dict[int, list[int]] = {}
        # The reconfig in flight (its zxid and membership): from it on, every
        # proposal needs a quorum of the new voters too, until it commits.
        self.pending_config: tuple[int, membership.QuorumConfig] | None = None
        # linearizableReads: read points confirmed by a quorum (zkpy.zab.readindex).
        self.reads = ReadRounds(self) if peer.linear_reads else None

    @property
    def newleader_zxid(self) -> int:
        return m.make_zxid(self.epoch, 0)

    def next_zxid(self) -> int:
        if self.peer.standalone:
            # ZooKeeperServer's zxid is a plain counter: it carries into the epoch.
            return self.peer.history.last_zxid + 1
        return m.make_zxid(self.epoch, self.counter + 1)

    def begin(self) -> None:
        self._maybe_choose_epoch()  # an ensemble of one needs nobody else

    def begin_standalone(self) -> None:
        """A standalone server: established at once in the epoch of its last
        zxid, with everything it logged committed (it was the whole quorum)."""
        p = self.peer
        last = p.history.last_zxid
        self.epoch, self.counter = m.epoch_of(last), m.counter_of(last)
        self.sync_started = self.established = True
        self.committed = last
        p.commit_upto(last)
        p.announce(True)

    # -- inputs ---------------------------------------------------------------------------

    def on_packet(self, src: int, pkt: m.QuorumPacket) -> None:
        if self._commit_due and pkt.type != m.ACK:
            self.settle_acks()
        if pkt.type == m.FOLLOWERINFO or pkt.type == m.OBSERVERINFO:
            self._follower_info(src, pkt)
            return
        if src == self.peer.my_id:
            if pkt.type == m.ACK:
                self._self_ack(pkt.zxid)
            return
        learner = self.learners.get(src)
        if learner is None:
            return  # from a connection we already dropped
        learner.last_heard = self.peer.ticks
        learner.sending_state = False  # it answers: it has what it needed of it
        if pkt.type == m.ACKEPOCH:
            self._ack_epoch(learner, pkt)
        elif pkt.type == m.ACK:
            self._learner_ack(learner, pkt.zxid)
        elif learner.phase not in _FORWARDING:
            # LearnerHandler reads only ACKEPOCH, then an ACK, before that.
            self._drop(src, f"{m.describe(pkt)} while {learner.phase}")
        elif pkt.type == m.REQUEST:
            if not self.established:
                return  # nobody serves clients before UPTODATE
            if m.request_type(pkt.data) == m.OP_SYNC:
                if self.reads is not None:
                    self._read_point_request(src, pkt.data)
                else:
                    self._sync_request(src)
            else:
                self.peer.request(src, pkt.data or b"", pkt.authinfo)
        elif pkt.type == m.PING:
            if pkt.data:
                self.peer.ready().pings.append((src, pkt.data))
            if self.reads is not None:
                self.reads.acked(src, pkt.zxid)
        elif pkt.type == m.REVALIDATE:
            self._revalidate(learner, pkt)
        else:
            self._drop(src, f"unexpected {m.describe(pkt)}")

    def state_sent(self, sid: int) -> None:
        learner = self.learners.get(sid)
        if learner is not None:
            learner.sending_state = False
            learner.last_heard = self.peer.ticks

    def on_lost(self, sid: int) -> None:
        self._forget(sid)

    def _forget(self, sid: int) -> None:
        """A learner's connection is gone: so are the syncs it asked for (each
        belongs to its LearnerHandler in ZooKeeper). Sending one later would
        reach the learner's next connection and answer a sync it never sent."""
        self.learners.pop(sid, None)
        if sid not in self.peer.voters:
            # Its ACKs count for nobody's quorum: keep a watermark per voter only,
            # or every server id that ever connected would stay here (ZooKeeper's
            # ack sets go with their proposals).
            self.acked.pop(sid, None)
        for waiting in self.pending_syncs.values():
            while sid in waiting:
                waiting.remove(sid)
        if self.reads is not None:
            self.reads.forget(sid)

    def on_tick(self) -> None:
        p = self.peer
        if not self.established and p.ticks - self.started > p.init_limit:
            # Leader.lead: waitForEpochAck / waitForNewLeaderAck time out after
            # initLimit ticks, and the peer goes back to LOOKING.
            p.become_looking("no quorum synced within initLimit")
            return
        for learner in list(self.learners.values()):
            limit = p.sync_limit if learner.phase == SYNCED else p.init_limit
            if learner.sending_state:
                learner.last_heard = p.ticks  # its time starts when the state is out
            elif p.ticks - learner.last_heard > limit:
                self._drop(learner.sid, f"silent for {limit} ticks while {learner.phase}")
        # With linear reads a PING carries the newest confirmation round, which
        # learners echo (zkpy.zab.readindex); otherwise the last zxid, as ZooKeeper.
        ping = m.packet(m.PING, p.history.last_zxid if self.reads is None
                        else self.reads.ping_zxid())
        for sid, learner in self.learners.items():
            # LearnerHandler.ping: not before the sync stream went out, or the
            # learner exits ("Got unexpected packet from leader: PING").
            if learner.phase in _FORWARDING:
                p.send(sid, ping)
        if self.established:
            synced = {s for s, lr in self.learners.items() if lr.phase == SYNCED}
            if not p.quorum(synced | {p.my_id}):
                # Leader.lead: "Not sufficient followers synced, only synced with
                # sids: ..." -> shutdown, back to LOOKING.
                p.become_looking("not sufficient followers synced")

    def propose(self, txn: bytes, zxid: int | None) -> int:
        return self.propose_many([(zxid, txn)])

    def propose_many(self, entries: list[tuple[int | None, bytes]]) -> int:
        """Broadcast txns in order (each zxid, if given, must be the next one); the
        last zxid proposed. Our own ACK is the disk's ``Persisted`` of them."""
        if not entries:
            return 0
        p = self.peer
        # Followers syncing or synced get PROPOSALs (observers: an INFORM per commit).
        to = [lr.sid for lr in self.learners.values()
              if lr.phase in _FORWARDING and not lr.observer]
        history = p.history
        outstanding = self.outstanding
        rolls_over = not p.standalone  # (a standalone zxid carries into the epoch)
        # Each proposal's zxid is the one before it plus one, in either mode
        # (``next_zxid``), so it is looked up once for the batch.
        nz = self.next_zxid() - 1
        for accepted, (zxid, txn) in enumerate(entries):
            nz += 1
            if zxid is not None and zxid != nz:
                raise ValueError(f"proposal carries zxid 0x{zxid:x}, the next is 0x{nz:x}")
            if rolls_over and nz & _MAX_COUNTER == _MAX_COUNTER:
                # Leader.propose: "zxid lower 32 bits have rolled over, forcing re-election".
                p.become_looking("zxid counter rolled over")
                raise NotLeader("zxid counter rolled over; re-electing", accepted)
            config = membership.reconfig_of(txn)
            if config is not None:
                if self.pending_config is not None:
                    raise NotLeader("a reconfig is already in progress", accepted)
                self.pending_config = (nz, config.with_version(nz))
            self.counter += 1
            history.append(nz, txn)
            p.persist(Append(nz, txn))
            outstanding.append(nz)
            if to:
                proposal = m.packet(m.PROPOSAL, nz, txn)
                for sid in to:
                    p.send(sid, proposal)
        return nz

    def on_persisted(self, zxid: int) -> None:
        """Our disk synced its log up to ``zxid``: that is our ACK of every
        proposal up to it (AckRequestProcessor, after the sync)."""
        if zxid > self.logged:
            self.logged = zxid
            if self.established:
                self._advance_commits()

    # -- discovery ------------------------------------------------------------------------

    def _follower_info(self, src: int, pkt: m.QuorumPacket) -> None:
        p = self.peer
        try:
            named = m.learner_id(pkt)
        except JuteError:
            named = -1
        if named != src or src == p.my_id:
            # Its learner (if this connection had one) goes too.
            self._drop(src, f"{m.describe(pkt)} names server {named}")
            return
        if m.epoch_of(pkt.zxid) > m.MAX_EPOCH:
            self._drop(src, f"{m.describe(pkt)}: epoch past {m.MAX_EPOCH}")
            return
        # Anyone may learn from us (LearnerHandler takes any sid): a server
        # outside the voters follows without a vote until a reconfig adds it.
        self._forget(src)  # a new connection replaces the old one
        learner = Learner(src, m.epoch_of(pkt.zxid), p.ticks, pkt.type == m.OBSERVERINFO)
        learner.watermarks = bool(m.features_of(pkt) & p.features & m.WATERMARKS)
        if 0 <= self.epoch < learner.accepted_epoch and src in p.voters:
            # It promised a newer epoch (to a leader that then failed) and will
            # refuse ours ("Leaders epoch is less than accepted epoch") for as
            # long as we lead. ZooKeeper leaves it retrying; we re-elect so the
            # next epoch is chosen above its promise and every voter can join.
            p.become_looking(f"follower {src} accepted epoch {learner.accepted_epoch}")
            return
        self.learners[src] = learner
        if self.epoch >= 0:
            self._send_leader_info(learner)
        else:
            self._maybe_choose_epoch()

    def _maybe_choose_epoch(self) -> None:
        p = self.peer
        waiting = [lr for lr in self.learners.values() if lr.phase == INFO]
        if not p.quorum({lr.sid for lr in waiting} | {p.my_id}):
            return
        # Leader.getEpochToPropose: once a quorum is connected, the new epoch is
        # one more than the largest acceptedEpoch among them (ours included).
        self.epoch = max([p.accepted_epoch] + [lr.accepted_epoch for lr in waiting]) + 1
        p.accepted_epoch = self.epoch
        p.persist(SaveEpoch(accepted=self.epoch))
        self.epoch_acks = {p.my_id}
        for learner in waiting:
            self._send_leader_info(learner)
        self._maybe_start_sync()

    def _send_leader_info(self, learner: Learner) -> None:
        info = m.leader_info(self.newleader_zxid, self.peer.features)
        self.peer.send_durable(learner.sid, info)  # after our acceptedEpoch is saved
        learner.phase = EPOCH_SENT

    def _ack_epoch(self, learner: Learner, pkt: m.QuorumPacket) -> None:
        try:
            reported = m.read_int(pkt.data)
        except ValueError:
            reported = -2
        if learner.phase != EPOCH_SENT or reported < -1:
            self._drop(learner.sid, f"ACKEPOCH while {learner.phase} (epoch {reported})")
            return
        learner.last_zxid = pkt.zxid
        learner.phase = EPOCH_ACKED
        if reported != -1 and not self.sync_started:
            # Leader.waitForEpochAck: a follower whose (currentEpoch, lastZxid)
            # is more recent than ours "is ahead of the leader": we must not lead.
            # Only until a quorum acked the epoch, as there (electionFinished):
            # by then we set our currentEpoch, and a quorum no more recent than
            # us holds every committed txn; the latecomer is synced (TRUNC, SNAP)
            # like any other. Bailing out then instead made two members take turns
            # leading for ever, each ahead of the other once it had bumped its
            # currentEpoch (found by the power-loss simulation).
            if (reported, pkt.zxid) > self.summary:
                if learner.sid not in self.peer.voters:
                    # ZooKeeper's LearnerHandler throws and that learner goes; only
                    # a voter's history can keep us from leading (anyone else
                    # could stop any leader still gathering its quorum at will).
                    self._drop(learner.sid, f"server {learner.sid}, not a voter, reports a "
                                            f"history ahead of ours (epoch {reported})")
                    return
                self.peer.become_looking(f"follower {learner.sid} is ahead of the leader")
                return
            self.epoch_acks.add(learner.sid)
        if self.sync_started:
            self._sync(learner)
        else:
            self._maybe_start_sync()

    # -- synchronization ------------------------------------------------------------------

    def _maybe_start_sync(self) -> None:
        p = self.peer
        if self.sync_started or not p.quorum(self.epoch_acks):
            return
        self.sync_started = True
        # Leader.lead: after waitForEpochAck, self.setCurrentEpoch(epoch); our own
        # NEWLEADER ack counts only once that (and our whole log) is on disk.
        p.current_epoch = self.epoch
        p.persist(SaveEpoch(current=self.epoch))
        if p.config is not None and p.config.version == 0 and p.reconfig_enabled:
            # A membership read from zoo.cfg has no version yet: the first leader
            # stamps it with its NEWLEADER zxid (ZOOKEEPER-1783), for everyone.
            p.activate(p.config.with_version(self.newleader_zxid))
        p.send_durable(p.my_id, m.packet(m.ACK, self.newleader_zxid))
        for learner in list(self.learners.values()):
            if learner.phase == EPOCH_ACKED:
                self._sync(learner)

    def _sync(self, learner: Learner) -> None:
        p = self.peer
        for pkt in self._sync_stream(learner):
            p.send(learner.sid, pkt)
        config = p.config.text().encode() if p.config is not None else None
        p.send(learner.sid, m.packet(m.NEWLEADER, self.newleader_zxid, config))
        learner.phase = SYNCING

    def _sync_stream(self, learner: Learner) -> list[m.QuorumPacket]:
        """LearnerHandler.syncFollower and Leader.startForwarding: DIFF when the
        learner's history is a prefix of ours within the in-memory log (or it
        reports a new epoch's zxid, ``epoch << 32``, that our log spans); TRUNC
        back to the last zxid we share when it has a tail we lack (an old
        epoch's uncommitted txns); SNAP when it is behind what we hold, or,
        once established, when a TRUNC would cross an epoch ("We cannot send
        TRUNC that cross epoch boundary. The learner will crash if it is
        asked to do so"). Then each
        txn after that point: PROPOSAL+COMMIT up to what is committed (before
        we are established, all of our history: a quorum's NEWLEADER ACKs will
        commit it), PROPOSAL alone after it, to followers only."""
        p = self.peer
        h = p.history
        peer_zxid = learner.last_zxid
        committed = self.committed if self.established else h.last_zxid
        new_epoch_zxid = m.counter_of(peer_zxid) == 0
        if h.holds(peer_zxid) or (new_epoch_zxid and h.base <= peer_zxid <= h.last_zxid):
            start, head = peer_zxid, m.packet(m.DIFF, committed)
        elif peer_zxid > h.base and not new_epoch_zxid and (
                not self.established or _same_epoch(peer_zxid, h.next_after(peer_zxid))):
            # Before we are established our tree lags our history (the tail is
            # applied at establishment), so a SNAP could take a learner back
            # behind what it applied: TRUNC across the epoch then.
            start = h.before(peer_zxid)
            head = m.packet(m.TRUNC, start)
        else:
            # The state itself is the links' to send (``zkpy.zab.driver.Links``):
            # our tree at ``start`` or later, which the learner replays from here.
            start = p.applied
            head = m.packet(m.SNAP, start, None)
            learner.sending_state = True
        stream = [head]
        for zxid, txn in h.after(start):
            if zxid <= committed:
                stream += [m.packet(m.PROPOSAL, zxid, txn), m.packet(m.COMMIT, zxid)]
            elif not learner.observer:
                stream.append(m.packet(m.PROPOSAL, zxid, txn))
        return stream

    def _self_ack(self, zxid: int) -> None:
        if zxid == self.newleader_zxid and self.sync_started and not self.peer.standalone:
            self.newleader_acks.add(self.peer.my_id)
            self._maybe_establish()
        else:
            self._ack(self.peer.my_id, zxid)

    def _learner_ack(self, learner: Learner, zxid: int) -> None:
        if self._commit_due and (m.counter_of(zxid) == 0 or learner.phase not in _FORWARDING):
            self.settle_acks()  # not a plain ACK of a proposal: it may act on commits
        if m.counter_of(zxid) == 0:
            if zxid == self.newleader_zxid and learner.phase == SYNCING:
                learner.phase = SYNCED
                self.newleader_acks.add(learner.sid)
                if self.established:
                    self.peer.send(learner.sid, _UPTODATE)
                else:
                    self._maybe_establish()
            elif learner.phase != SYNCED:
                self._drop(learner.sid, f"ACK of NEWLEADER while {learner.phase}")
            # Otherwise Learner.syncWithLeader's ACK after UPTODATE: Leader.processAck
            # ignores every ACK of a zxid with counter 0.
        elif learner.phase in _FORWARDING:
            # A proposal the learner logged (one its sync carried, or a new one).
            self._ack(learner.sid, zxid)
        else:
            self._drop(learner.sid, f"ACK of 0x{zxid:x} while {learner.phase}")

    def _maybe_establish(self) -> None:
        p = self.peer
        if self.established or p.my_id not in self.newleader_acks:
            return
        if not p.quorum(self.newleader_acks):
            return
        # Zab phase 2 ends: a quorum holds our history and our epoch, so all of
        # it is committed; UPTODATE tells each synced learner to apply it.
        self.established = True
        self.committed = p.history.last_zxid
        p.commit_upto(self.committed)
        for learner in self.learners.values():
            if learner.phase == SYNCED:
                p.send(learner.sid, _UPTODATE)
        p.announce(True)

    # -- broadcast --------------------------------------------------------------------------

    def _sync_request(self, sid: int) -> None:
        """Leader.processSync: the SYNC goes out behind the COMMIT of the newest
        proposal in flight, so the learner answers its client only once it has
        applied everything the leader had proposed when the sync arrived."""
        if self.outstanding:
            self.pending_syncs.setdefault(self.outstanding[-1], []).append(sid)
        else:
            self.peer.send(sid, m.packet(m.SYNC, 0))

    def _read_point_request(self, sid: int, data: bytes | None) -> None:
        """A learner's sync with linear reads: a read point (session id 0, what
        zkpy.server.linear_reads sends for a batch of reads) waits for a
        confirmation round only; a client's sync for the newest proposal in
        flight only, as ``_sync_request``, in order with the learner's read
        points (``zkpy.zab.readindex``)."""
        assert self.reads is not None
        if m.request_head(data)[0] == 0:
            self.reads.ask(sid)
            return
        outstanding = self.outstanding
        self.reads.ask(sid, outstanding[-1] if outstanding else 0, confirm=False)

    def followers(self) -> list[int]:
        """The learners that get proposals (syncing or synced followers)."""
        return [sid for sid, lr in self.learners.items()
                if lr.phase in _FORWARDING and not lr.observer]

    def _ack(self, sid: int, zxid: int) -> None:
        self._acked_upto(sid, zxid)
        outstanding = self.outstanding
        if outstanding and zxid >= outstanding[0]:  # else it decides nothing new
            if self.batching:
                self._commit_due = True
            else:
                self._advance_commits()

    def settle_acks(self) -> None:
        """Commit what the ACKs deferred in this batch allow (see ``batching``)."""
        if self._commit_due:
            self._commit_due = False
            self._advance_commits()

    def _acked_upto(self, sid: int, zxid: int) -> None:
        if zxid > self.acked.get(sid, 0):
            self.acked[sid] = zxid

    def ackers(self, zxid: int) -> set[int]:
        """The voters (and others) known to hold ``zxid`` in their log."""
        holders = {sid for sid, upto in self.acked.items() if upto >= zxid}
        if self.logged >= zxid:
            holders.add(self.peer.my_id)
        return holders

    def quorum_holds(self, zxid: int) -> bool:
        """Leader.tryToCommit's test: a quorum holds it (the new voters too, while a
        reconfig is in flight)."""
        pending = self.pending_config
        if pending is not None and zxid >= pending[0]:
            ackers = self.ackers(zxid)
            return self.peer.quorum(ackers) and pending[1].quorum(ackers)
        return zxid <= self.quorum_mark()

    def quorum_mark(self) -> int:
        """The highest zxid a quorum of the voters holds in their logs (-1 if
        none): outside a reconfig's, a quorum holds every zxid up to it and none
        past it. ACKs are watermarks, so the quorum's is the majority-th highest
        of the voters' (ours the larger of our log's and an ACK from ourselves:
        we count once)."""
        p = self.peer
        voters = p.voters
        me = p.my_id
        marks = [upto for sid, upto in self.acked.items() if sid != me and sid in voters]
        if me in voters:
            marks.append(max(self.logged, self.acked.get(me, -1)))
        need = len(voters) // 2 + 1
        if len(marks) < need:
            return -1
        marks.sort(reverse=True)
        return marks[need - 1]

    def _advance_commits(self) -> None:
        """Leader.tryToCommit: commit in zxid order, each once a quorum acked it.
        The quorum's watermark is worked out once for the whole run of commits
        (a batch of ACKs commits hundreds at a time), not once per proposal."""
        p = self.peer
        outstanding = self.outstanding
        done = 0  # committed here, not yet handed to the tree
        mark = self.quorum_mark()
        while outstanding:
            zxid = outstanding[0]
            pending = self.pending_config
            if pending is None or zxid < pending[0]:
                if zxid > mark:
                    break
            elif not self.quorum_holds(zxid):  # the new voters must hold it too
                break
            outstanding.popleft()
            self.committed = zxid
            if pending is None or zxid != pending[0]:
                self._announce_commit(zxid, None, None)
                done = zxid
                continue
            # Leader.tryToCommit: a reconfig's COMMIT names who leads after it, and
            # it takes effect as it is applied (later proposals are judged by the
            # new membership), so it is applied before going on.
            if done:
                self._commit_watermarks(done)
            designated = self._designated_leader(pending[1], self.ackers(zxid))
            txn = p.history.txn(zxid) or b""
            self.pending_config = None
            self._announce_commit(zxid, m.commit_and_activate(zxid, designated),
                                  m.inform_and_activate(zxid, designated, txn))
            p.commit_upto(zxid)
            done = 0
            if designated != p.my_id:
                # "this leader is not the designated leader anymore, setting
                # allowedToCommit=false"; we follow it (or observe it) once this
                # step's COMMITs are out.
                p.leave_after_step(f"reconfig 0x{zxid:x} designates leader {designated}",
                                   designated)
                break
            mark = self.quorum_mark()  # the new membership's voters decide from here
        if done:
            self._commit_watermarks(done)
            p.commit_upto(done)
        if self.reads is not None and self.reads.waiters:
            self.reads.answer()  # syncs that waited for a proposal's commit

    def _announce_commit(self, zxid: int, commit: m.QuorumPacket | None,
                         inform: m.QuorumPacket | None) -> None:
        """COMMIT to the followers, INFORM (with the txn) to the observers, then
        the SYNCs that waited for this proposal. Each packet is made when a
        learner first needs it (nobody needs one when we are alone). A plain
        COMMIT to a follower that takes watermarks waits for the end of the run
        (``_commit_watermarks``), unless a SYNC of its must follow it now."""
        p = self.peer
        syncs = self.pending_syncs.pop(zxid, ())
        for learner in self.learners.values():
            if learner.phase not in _FORWARDING:
                continue
            if learner.observer:
                if inform is None:
                    inform = m.packet(m.INFORM, zxid, p.history.txn(zxid) or b"")
                p.send(learner.sid, inform)
            elif commit is not None or not learner.watermarks or learner.sid in syncs:
                if commit is None:
                    commit = m.packet(m.COMMIT, zxid)
                p.send(learner.sid, commit)
                learner.commit_sent = zxid
        for sid in syncs:
            if sid in self.learners:
                p.send(sid, m.packet(m.SYNC, 0))

    def _commit_watermarks(self, zxid: int) -> None:
        """One COMMIT of ``zxid`` (the last of a run) to each follower that takes
        it as the commit of everything before it too, and was not sent it yet."""
        commit = None
        for learner in self.learners.values():
            if (learner.watermarks and learner.commit_sent < zxid and not learner.observer
                    and learner.phase in _FORWARDING):
                if commit is None:
                    commit = m.packet(m.COMMIT, zxid)
                self.peer.send(learner.sid, commit)
                learner.commit_sent = zxid

    def _designated_leader(self, config: membership.QuorumConfig, ackers: set[int]) -> int:
        """Leader.getDesignatedLeader: we stay if the new membership keeps us as a
        voter; otherwise the voter of it that acked the reconfig and the most
        proposals after it (the most up to date), the larger id on a tie."""
        me = self.peer.my_id
        if me in config.voters:
            return me
        candidates = (ackers & config.voters) - {me}
        if not candidates:
            return me
        # The most proposals acked after it: the highest ACK watermark.
        return max(candidates, key=lambda sid: (self.acked.get(sid, 0), sid))

    def _revalidate(self, learner: Learner, pkt: m.QuorumPacket) -> None:
        """Leader.revalidateSession: is the session alive (touching it if so)?"""
        try:
            session_id, timeout = m.read_revalidate_request(pkt.data)
        except m.PacketError as e:
            self._drop(learner.sid, f"malformed REVALIDATE: {e}")
            return
        valid = self.peer.revalidate(learner.sid, session_id, timeout)
        self.peer.send(learner.sid, m.revalidate_answer(pkt, session_id, valid))

    def _drop(self, sid: int, why: str) -> None:
        self._forget(sid)
        self.peer.disconnect(sid, why)


# LearnerHandler: "Sending UPTODATE message" with zxid -1.
_UPTODATE: Final = m.packet(m.UPTODATE, -1)


def _same_epoch(zxid: int, other: int | None) -> bool:
    return other is None or m.epoch_of(zxid) == m.epoch_of(other)
