"""The follower's side of Zab: discovery, synchronization, broadcast.

Phases (Medeiros, "ZooKeeper's atomic broadcast protocol: Theory and
practice", phases 1-3; ZooKeeper's ``Learner.registerWithLeader`` /
``syncWithLeader`` / ``Follower.processPacket``):

- DISCOVERY: FOLLOWERINFO(acceptedEpoch) sent; waiting for LEADERINFO.
- EPOCH_ACKED: ACKEPOCH sent; waiting for DIFF, TRUNC or SNAP.
- SYNCING: taking the leader's history (PROPOSALs, COMMITs) up to NEWLEADER.
- NEWLEADER_ACKED: history and currentEpoch persisted, NEWLEADER acked;
  waiting for UPTODATE (new proposals are already logged and acked).
- BROADCAST: log and ACK each PROPOSAL after persisting; apply on COMMIT.

Anything out of place sends the peer back to LOOKING, as ZooKeeper's
follower thread does when it throws. Nothing is applied before UPTODATE
except a SNAP's state, which is committed by construction.

What goes back to the leader is what ZooKeeper 3.8's Learner sends, in its
order: ACKEPOCH; nothing during the sync (PINGs are not answered until
UPTODATE: a LearnerHandler takes anything but an ACK there as a broken
learner); the NEWLEADER ACK, then an ACK for each proposal the sync carried
without a COMMIT; after UPTODATE, an ACK of the new epoch's zxid
(``epoch << 32``, which leaders ignore), then PING replies with the touched
sessions, ACKs of proposals (followers; to a zkpy leader one for a batch of
packets, see ``messages.WATERMARKS``), REQUESTs and REVALIDATEs. COMMIT
and COMMITANDACTIVATE, INFORM and INFORMANDACTIVATE commit in zxid order
(COMMIT names one txn; in zxid order that is "everything up to here"); a
COMMITANDACTIVATE naming another leader makes us follow it (or lead, if it
names us) without an election, as QuorumPeer.updateServerState does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zkpy.zab import membership
from zkpy.zab import messages as m
from zkpy.zab.events import Append, InstallSnapshot, SafetyError, SaveEpoch, Truncate

if TYPE_CHECKING:
    from zkpy.zab.peer import Peer

DISCOVERY = "discovery"
EPOCH_ACKED = "epoch-acked"
SYNCING = "syncing"
NEWLEADER_ACKED = "newleader-acked"
BROADCAST = "broadcast"


class Following:
    def __init__(self, peer: Peer, leader: int, observer: bool = False) -> None:
        self.peer = peer
        self.leader = leader
        # An observer (Observer.observeLeader): registers with OBSERVERINFO,
        # syncs like a follower, then applies each INFORM; it never ACKs.
        self.observer = observer
        self.phase = DISCOVERY
        self.epoch = -1
        self.watermark = 0  # highest zxid the leader said is committed
        # While the peer handles a batch of packets, COMMITs only raise the
        # watermark and ``catch_up`` applies them at the end of the batch.
        self.deferring = False
        # A zkpy leader (messages.WATERMARKS in its LEADERINFO) takes an ACK as
        # saying we logged every zxid up to it: in broadcast, a batch of
        # packets' proposals get one ACK, the last's (``ack_due``), at its end.
        self.watermarks = False
        self.ack_due = 0
        self.last_heard = peer.ticks

    def begin(self) -> None:
        p = self.peer
        version = p.config.version if p.config is not None else 0
        p.send(self.leader, m.follower_info(p.my_id, p.accepted_epoch, version, self.observer,
                                            p.features))

    def on_tick(self) -> None:
        # Learner: the socket's read timeout is initLimit ticks while syncing and
        # syncLimit ticks afterwards; a silent leader sends the follower LOOKING.
        limit = self.peer.sync_limit if self.phase == BROADCAST else self.peer.init_limit
        if self.peer.ticks - self.last_heard > limit:
            self.peer.become_looking(f"leader {self.leader} silent for {limit} ticks")

    def on_packet(self, pkt: m.QuorumPacket) -> None:
        self.last_heard = self.peer.ticks
        handler = _HANDLERS.get((self.phase, pkt.type))
        if handler is None:
            if pkt.type == m.PING and self.phase in (SYNCING, NEWLEADER_ACKED):
                return  # Learner.syncWithLeader reads past PINGs without answering
            self.peer.become_looking(f"unexpected {m.describe(pkt)} while {self.phase}")
            return
        try:
            handler(self, pkt)
        except m.PacketError as e:
            self.peer.become_looking(f"malformed {m.describe(pkt)}: {e}")
        except SafetyError as unsafe:  # (its own name: mypyc types ``e`` by the first clause)
            # ZooKeeper's learner exits the process here; refusing this leader is
            # enough (nothing committed was undone: the handlers check first).
            self.peer.become_looking(f"refused {m.describe(pkt)}: {unsafe}")

    # -- discovery --------------------------------------------------------------------

    def _leader_info(self, pkt: m.QuorumPacket) -> None:
        p = self.peer
        new_epoch = m.epoch_of(pkt.zxid)
        if new_epoch > m.MAX_EPOCH:
            raise m.PacketError(f"epoch {new_epoch} is past the last one a zxid can carry")
        if new_epoch > p.accepted_epoch:
            reported = p.current_epoch
            p.accepted_epoch = new_epoch
            p.persist(SaveEpoch(accepted=new_epoch))
        elif new_epoch == p.accepted_epoch:
            # Learner.java: "since we have already acked an epoch equal to the
            # leaders, we cannot ack again ... the -1 indicates that this reply
            # should not count as an ack for the new epoch". That is what keeps
            # two leaders from both gathering a quorum for one epoch.
            reported = -1
        else:
            p.become_looking(f"leader's epoch {new_epoch} is less than accepted epoch "
                             f"{p.accepted_epoch}")
            return
        self.epoch = new_epoch
        self.watermarks = bool(m.features_of(pkt) & p.features & m.WATERMARKS)
        self.phase = EPOCH_ACKED
        # ACKEPOCH only after acceptedEpoch is on disk (Zab: "f.p <- e'" is a
        # durable promise not to follow an older epoch).
        ack = m.packet(m.ACKEPOCH, p.history.last_zxid, m.int_data(reported))
        p.send_durable(self.leader, ack)

    # -- synchronization --------------------------------------------------------------

    def _diff(self, pkt: m.QuorumPacket) -> None:
        # The zxid of DIFF (and of TRUNC) is one the leader holds as committed
        # (its lastProcessedZxid or maxCommittedLog), so our history up to it,
        # the leader's too, commits at UPTODATE: that is how a restarted
        # follower learns its logged txns are committed.
        self.watermark = max(self.watermark, pkt.zxid)
        self.phase = SYNCING

    def _trunc(self, pkt: m.QuorumPacket) -> None:
        p = self.peer
        if pkt.zxid < p.applied:
            raise SafetyError(f"TRUNC to 0x{pkt.zxid:x} below applied 0x{p.applied:x}")
        p.history.truncate(pkt.zxid)
        p.persist(Truncate(pkt.zxid))
        self.watermark = max(self.watermark, pkt.zxid)
        self.phase = SYNCING

    def _snap(self, pkt: m.QuorumPacket) -> None:
        p = self.peer
        if pkt.zxid < p.applied:
            raise SafetyError(f"SNAP at 0x{pkt.zxid:x} below applied 0x{p.applied:x}")
        data = pkt.data or b""
        p.history.reset(pkt.zxid)
        p.persist(InstallSnapshot(pkt.zxid, data))
        p.install(pkt.zxid, data)
        self.phase = SYNCING

    def _proposal(self, pkt: m.QuorumPacket) -> None:
        p = self.peer
        if pkt.zxid <= p.history.last_zxid:
            if self.phase != BROADCAST and pkt.zxid <= p.history.base:
                # ZooKeeper's LearnerHandler starts forwarding before it reads the
                # SNAP's zxid and streams its tree: txns committed in between come
                # again after the snapshot that already holds them.
                return
            p.become_looking(f"proposal 0x{pkt.zxid:x} out of order")
            return
        _taken(p.check_txn(pkt.zxid, pkt.data or b""))
        p.history.append(pkt.zxid, pkt.data or b"")
        p.persist(Append(pkt.zxid, pkt.data or b""))
        if self.phase != SYNCING and not self.observer:
            if self.watermarks and self.deferring and self.phase == BROADCAST:
                self.ack_due = pkt.zxid  # one ACK at the batch's end (``catch_up``)
                return
            # Follower -> SyncRequestProcessor -> SendAckRequestProcessor: the ACK
            # leaves only after the txn is flushed to the log.
            p.send_durable(self.leader, m.packet(m.ACK, pkt.zxid))

    def _early_commit(self, pkt: m.QuorumPacket) -> None:
        self.watermark = max(self.watermark, pkt.zxid)

    def _new_leader(self, pkt: m.QuorumPacket) -> None:
        p = self.peer
        if m.epoch_of(pkt.zxid) != self.epoch:
            p.become_looking(f"NEWLEADER for epoch {m.epoch_of(pkt.zxid)}, not {self.epoch}")
            return
        # ZOOKEEPER-3911: "the learner must persist all the txns it received
        # during the sync before acking NEWLEADER", or a quorum of acks may
        # cover txns that a crash then loses. The history and the snapshot are
        # already in this Ready's persist ops; currentEpoch goes after them, and
        # the ACK waits for all of it to be synced.
        p.current_epoch = self.epoch
        p.persist(SaveEpoch(current=self.epoch))
        if pkt.data:
            # The leader's membership (QuorumVerifier bytes, as ZooKeeper sends):
            # how a server that missed a reconfig learns it.
            try:
                config = membership.parse_config_text(pkt.data.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                p.become_looking("NEWLEADER with a malformed membership")
                return
            p.activate(config)
        p.send_durable(self.leader, m.packet(m.ACK, pkt.zxid))
        if not self.observer:
            # Learner.syncWithLeader logs the sync's uncommitted proposals at
            # NEWLEADER, and each is ACKed once logged, after the NEWLEADER ACK.
            # We ACK every txn we hold past the commit point: with a DIFF those
            # of ours the leader still has outstanding are ACKed again too (an
            # ACK that rode a connection now gone counts once more).
            for zxid, _ in p.history.after(self.watermark):
                p.send_durable(self.leader, m.packet(m.ACK, zxid))
        self.phase = NEWLEADER_ACKED

    def _up_to_date(self, pkt: m.QuorumPacket) -> None:
        p = self.peer
        self.watermark = max(self.watermark, pkt.zxid)
        self.phase = BROADCAST
        # Learner.syncWithLeader acks the new epoch once more after UPTODATE.
        p.send(self.leader, m.packet(m.ACK, m.make_zxid(self.epoch, 0)))
        p.announce(True)
        self._commit(self.watermark)

    # -- broadcast ---------------------------------------------------------------------

    def _broadcast_commit(self, pkt: m.QuorumPacket) -> None:
        self.watermark = max(self.watermark, pkt.zxid)
        if not self.deferring:
            self._commit(self.watermark)

    def catch_up(self) -> None:
        """Apply what the COMMITs of a batch of packets said (``deferring``): one
        run of commits for the batch, not one per COMMIT."""
        self.deferring = False
        if self.ack_due:
            self.peer.send_durable(self.leader, m.packet(m.ACK, self.ack_due))
            self.ack_due = 0
        if self.phase == BROADCAST and self.watermark > self.peer.applied:
            self._commit(self.watermark)

    def _ping(self, pkt: m.QuorumPacket) -> None:
        # Learner.ping: the reply lists the sessions our clients kept alive.
        p = self.peer
        p.send(self.leader, m.QuorumPacket(m.PING, pkt.zxid, p.ping_data() or b"",
                                           pkt.authinfo))

    def _revalidated(self, pkt: m.QuorumPacket) -> None:
        self.peer.ready().revalidated.append(m.read_revalidate_answer(pkt.data))

    def _sync(self, pkt: m.QuorumPacket) -> None:
        self.peer.ready().syncs += 1

    def _commit_and_activate(self, pkt: m.QuorumPacket) -> None:
        """Follower.processPacket COMMITANDACTIVATE: commit the reconfig (which
        activates its membership as it is applied); if it names another leader,
        elect again (QuorumPeer.processReconfig's leader change)."""
        designated, _ = m.designated_leader(pkt)
        self.watermark = max(self.watermark, pkt.zxid)
        self._commit(self.watermark)  # now, even within a batch: a membership changes
        if designated != self.leader and self.peer.following is self:
            self.peer.leave_after_step(f"reconfig 0x{pkt.zxid:x} designates leader {designated}",
                                       designated)

    def _inform(self, pkt: m.QuorumPacket) -> None:
        """Observer.processPacket INFORM: a committed txn, logged and applied at once
        (or only applied, when the sync already brought its PROPOSAL)."""
        self._hold_inform(pkt.zxid, pkt.data or b"")
        self._commit(self.watermark)

    def _inform_and_activate(self, pkt: m.QuorumPacket) -> None:
        designated, txn = m.designated_leader(pkt)
        self._hold_inform(pkt.zxid, txn)
        self._commit(self.watermark)
        if designated != self.leader and self.peer.following is self:
            self.peer.leave_after_step(f"reconfig 0x{pkt.zxid:x} designates leader {designated}",
                                       designated)

    def _sync_inform(self, pkt: m.QuorumPacket) -> None:
        """An INFORM during the sync (ZooKeeper informs an observer from the moment
        its sync stream is queued): logged now, applied at UPTODATE."""
        if pkt.type == m.INFORMANDACTIVATE:
            self._hold_inform(pkt.zxid, m.designated_leader(pkt)[1])
        else:
            self._hold_inform(pkt.zxid, pkt.data or b"")

    def _hold_inform(self, zxid: int, txn: bytes) -> None:
        p = self.peer
        if zxid > p.history.last_zxid:
            _taken(p.check_txn(zxid, txn))
            p.history.append(zxid, txn)
            p.persist(Append(zxid, txn))
        self.watermark = max(self.watermark, zxid)

    def _commit(self, zxid: int) -> None:
        p = self.peer
        if zxid > p.history.last_zxid:
            # Follower.commit: "Committing zxid X but next pending txn Y" is fatal.
            p.become_looking(f"commit of 0x{zxid:x} beyond our log 0x{p.history.last_zxid:x}")
            return
        p.commit_upto(zxid)


def _taken(problem: str | None) -> None:
    """A txn the adapter could not read ends the connection (the
    handler's caller goes LOOKING on PacketError)."""
    if problem is not None:
        raise m.PacketError(problem)


_HANDLERS = {
    (DISCOVERY, m.LEADERINFO): Following._leader_info,
    (EPOCH_ACKED, m.DIFF): Following._diff,
    (EPOCH_ACKED, m.TRUNC): Following._trunc,
    (EPOCH_ACKED, m.SNAP): Following._snap,
    (SYNCING, m.NEWLEADER): Following._new_leader,
    (NEWLEADER_ACKED, m.UPTODATE): Following._up_to_date,
    (BROADCAST, m.PROPOSAL): Following._proposal,
    (BROADCAST, m.COMMIT): Following._broadcast_commit,
    (BROADCAST, m.COMMITANDACTIVATE): Following._commit_and_activate,
    (BROADCAST, m.SYNC): Following._sync,
    (BROADCAST, m.INFORM): Following._inform,
    (BROADCAST, m.INFORMANDACTIVATE): Following._inform_and_activate,
    (BROADCAST, m.PING): Following._ping,
    (BROADCAST, m.REVALIDATE): Following._revalidated,
}
for _phase in (SYNCING, NEWLEADER_ACKED):
    _HANDLERS.update({
        (_phase, m.PROPOSAL): Following._proposal,
        (_phase, m.COMMIT): Following._early_commit,
        (_phase, m.COMMITANDACTIVATE): Following._early_commit,
        (_phase, m.INFORM): Following._sync_inform,
        (_phase, m.INFORMANDACTIVATE): Following._sync_inform,
    })
