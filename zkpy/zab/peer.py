"""Zab (ZooKeeper Atomic Broadcast) as a pure, deterministic state machine.

One ``Peer`` per server. It never touches a socket, a clock, a thread or a
disk: an adapter (the Twisted quorum port, or the simulator in
``zkpy.testing.zabsim``) feeds it events and carries out what it asks, in the
style of etcd's raft (``Step`` / ``Ready`` / ``Advance``).

API
---
``Peer(my_id, voters, disk, snapshot_source=..., sync_limit=5, init_limit=10)``
    ``disk`` is the ``DiskState`` found at start (epoch files, snapshot zxid,
    logged txns after it). The adapter loads its tree from the snapshot only:
    logged txns after it are *accepted*, not known committed, and come back
    through ``Ready.commit`` once a leader commits them. A leader that must SNAP
    a learner sends a SNAP without data: its links send the state in its place
    (``zkpy.zab.driver.Links.send``). ``snapshot_source()`` returns the tree's
    snapshot bytes (``snapshot_bytes(tree, sessions)``) for links that send it
    in one piece (the simulators).

``Peer(..., standalone=True)`` is ZooKeeper's standalone server as an
    ensemble of one: it leads at once, in the epoch of its last zxid (no
    election, no epoch files), commits everything it logged (a quorum of one
    acknowledged it), and its zxids simply count up. Writes go through the
    same Propose -> persist -> own ACK -> commit path as a leader's.

``peer.step(event, now) -> Ready``
    ``now`` in ms (the election's timers use it). Events (``zkpy.zab.events``):
    ``Start``; ``Tick`` (one tickTime; leaders PING every tick and the limits
    below count ticks); ``Wake`` (let the election's ms timers fire between
    ticks: the adapter arms it for ``peer.election.next_deadline()``); ``Message(src, QuorumPacket)``
    (or ``Messages(src, packets)``: what one read of a connection brought, in one step); ``Vote(src,
    Notification)`` from the election port; ``Propose(txn, zxid=None)``
    (leader only, once ``can_propose``; the txn's header carries
    ``peer.next_zxid``); ``Forward(data, auth)`` (follower: a client write or
    sync for the leader, sent as REQUEST with the session's auth ids);
    ``Revalidate(session_id, timeout)`` (learner: a client reconnects with
    this session; the leader's answer comes back in ``Ready.revalidated``);
    ``ReadIndex()`` (leader with ``peer.linear_reads``: a read point for our
    own clients, answered in ``Ready.read_points`` once a quorum confirmed
    our leadership, ``zkpy.zab.readindex``);
    ``Persisted(zxid)`` (the adapter's word that all
    persist ops handed out so far are synced and the log ends at ``zxid``);
    ``ConnectionLost(peer)``. The returned Ready accumulates until ``advance()``.

Carrying out a Ready, in this order:
    1. ``roles``: role changes (``RoleChange``), oldest first.
    2. ``disconnect``: close the quorum connection to these peers (what is in
       flight both ways is lost; the other side sees ``ConnectionLost``).
    3. ``persist``: hand the ops to the disk *in order* (``SaveEpoch``,
       ``Append``, ``Truncate``, ``InstallSnapshot``); sync asynchronously.
    4. ``send`` now (quorum port) and ``votes`` now (election port). A
       destination equal to ``my_id`` is stepped back in as a ``Message``.
    5. ``send_after_persist``: only once this Ready's persist ops *and all
       earlier ones* are synced, then step ``Persisted(last logged zxid)``.
       These are the ACKs that promise durability: a follower's ACKs, its ACK
       of NEWLEADER, ACKEPOCH after saving acceptedEpoch, LEADERINFO after
       the leader saved it, and the leader's own ACKs (to ``my_id``). Each
       rides the connection that existed when the Ready was made: if that
       connection closed meanwhile, drop it (TCP would have lost it too).
    6. ``install`` (load a snapshot into the tree, replacing it) then
       ``commit``: (zxid, txn) pairs in zxid order, to apply to the tree
       (ServerCore.commit); ``requests``: (src, data, auth) of REQUEST
       packets a leader received from its learners, for its ServerCore to
       prepare and propose before ``on_ready`` returns (a sync is answered by
       Zab itself: SYNC after the COMMIT of the newest proposal, the writes
       of the requests before it included); ``pings``: learners' PING payloads,
       the sessions they kept alive; ``syncs``: how many SYNCs a follower got,
       each answering its oldest waiting sync; ``revalidated``: the leader's
       (session id, valid) answers to our REVALIDATEs; ``read_points``: how
       many ``ReadIndex`` requests are answered, oldest first.
    7. ``advance()``, then ``resume``: the rest of a ``Messages`` batch that
       this step left for the next (stepped as ``Messages`` at once, unless
       the connection it came on was dropped meanwhile).

Callbacks the adapter sets: ``peer.ping_data()`` (a follower's PING reply:
the sessions its clients touched) and ``peer.revalidate(learner, session_id,
timeout)`` (a leader's answer to a learner's REVALIDATE: is the session alive;
it is now routed through that learner).

ServerCore's seam: on the leader, ``committer.propose(req)`` becomes
``step(Propose(encode_txn(req.hdr, req.txn)))`` with ``req.hdr.zxid ==
peer.next_zxid``; each ``Ready.commit`` entry is handed to ``core.commit``
(the adapter maps zxids of its own requests back to them). On a follower the
write goes out as ``Forward``; its commit comes back through ``Ready.commit``.

Safety rules and where they come from are quoted next to the code in
``leading.py`` and ``following.py``; this module keeps the state they share.

The quorum conversations are Apache ZooKeeper 3.8's, packet for packet, in
both roles and for observers (``leading.py``, ``following.py``, the
election's ``wire.py``; ``tests/test_zab_conversation.py`` holds them to it,
``compat_tests/test_mixed.py`` runs mixed ensembles). What remains different
is a matter of choice, and none of it keeps zkpy out of a mixed ensemble:
    - A follower commits everything up to the zxid of COMMIT (and of DIFF,
      TRUNC), where ZooKeeper's commits the one txn a COMMIT names: the same
      thing in zxid order. It answers no PING until UPTODATE, as Learner.
    - A leader that is not established yet (its tree lags its log until a
      quorum acks NEWLEADER) answers a learner whose uncommitted tail crosses
      an epoch with TRUNC, where ZooKeeper's leader (whose tree holds its
      whole log) sends SNAP; once established it sends SNAP as ZooKeeper does.
    - A leader removed by a reconfig names its successor as ZooKeeper does
      (a voter of the new membership that acked the most), and then follows
      it at once, where ZooKeeper's keeps leading, committing nothing, until
      its followers have left for the successor.
    - A zkpy leader's session owners are member ids (ZooKeeper's are learner
      connections): a learner that reconnects to the same leader keeps its
      sessions routed to it (ZooKeeper's learner restarts and its clients
      reconnect, which amounts to the same).
    - Two zkpy members say so in their hellos (a trailer ZooKeeper reads
      past: ``messages.WATERMARKS``) and then send one ACK for a batch of
      proposals and one COMMIT for a run of commits, each standing for every
      zxid before it; to and from a ZooKeeper server every ACK and COMMIT
      goes as ZooKeeper sends it (its leader counts ACKs zxid by zxid, its
      follower exits on a COMMIT that skips a txn). ``quorumWatermarks=false``
      leaves the trailer out (``features = 0``): should a later ZooKeeper read
      more LearnerInfo fields, it would read the trailer as one.
    - Quorum SASL is DIGEST-MD5 only (no Kerberos); quorum TLS
      (``sslQuorum``, ``zkpy.net.quorumtls``) has no port unification
      (``portUnification``: plain and TLS peers on one port, for turning TLS
      on in a running ensemble) and no certificate reloading.

Membership (``config``, a ``zkpy.zab.membership.QuorumConfig``): the voters
count for elections and quorums; anyone else may still follow (a server
joining by reconfig, or one removed by it) or observe (OBSERVERINFO, then
INFORM for each commit). A reconfig proposal, and every proposal after it
until it commits, needs a quorum of the old voters and of the new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zkpy.mypyc_compat import mypyc_attr
from zkpy.zab import membership
from zkpy.zab import messages as m
from zkpy.zab.election import LEADING as E_LEADING
from zkpy.zab.election import LOOKING as E_LOOKING
from zkpy.zab.election import Election
from zkpy.zab.events import (
    FOLLOWING,
    LEADING,
    LOOKING,
    OBSERVING,
    ConnectionLost,
    DiskState,
    Event,
    Forward,
    Heard,
    Message,
    Messages,
    NotLeader,
    Persisted,
    PersistOp,
    Propose,
    ProposeMany,
    ReadIndex,
    Ready,
    Revalidate,
    RoleChange,
    Start,
    StateSent,
    Tick,
    Vote,
    Wake,
)
from zkpy.zab.following import Following
from zkpy.zab.history import History
from zkpy.zab.leading import Leading

__all__ = ["Peer", "NotLeader"]


def _no_snapshot() -> bytes:
    raise RuntimeError("this peer was built without a snapshot_source")


# What a learner applies when it gets it (Peer._order_breaks).
_APPLIED = frozenset({m.COMMIT, m.COMMITANDACTIVATE, m.INFORM, m.INFORMANDACTIVATE})


@mypyc_attr(allow_interpreted_subclasses=True)  # tests plant bugs in subclasses
class Peer:
    def __init__(self, my_id: int, voters: frozenset[int] | set[int], disk: DiskState,
                 snapshot_source: Callable[[], bytes] = _no_snapshot, *,
                 sync_limit: int = 5, init_limit: int = 10, log_window: int = 500,
                 finalize_wait: int = 200, resend_interval: int = 2000,
                 config: membership.QuorumConfig | None = None, standalone: bool = False) -> None:
        self.my_id = my_id
        # An ensemble of one that is not an ensemble (ZooKeeper's standalone server):
        # it leads from the start, with no election, no new epoch and no epoch files.
        self.standalone = standalone
        self.config = config
        self.voters = config.voters if config is not None else frozenset(voters)
        self.snapshot_source = snapshot_source
        self.sync_limit = sync_limit
        self.init_limit = init_limit
        self.log_window = log_window
        self.accepted_epoch = disk.accepted_epoch
        self.current_epoch = disk.current_epoch
        self.history = History(disk.snapshot_zxid, disk.log)
        self.applied = disk.snapshot_zxid  # the tree holds everything up to here
        self.durable_zxid = self.history.last_zxid
        self.role = LOOKING
        self.leading: Leading | None = None
        self.following: Following | None = None
        self.ticks = 0
        self.now = 0
        self.started = False
        # What a follower puts in its PING replies (the adapter's session touches).
        self.ping_data: Callable[[], bytes | None] = lambda: None
        # A leader's answer to a learner's REVALIDATE: (learner, session id,
        # timeout) -> is the session alive (and now owned by that learner)?
        self.revalidate: Callable[[int, int, int], bool] = lambda learner, sid, timeout: False
        # Can a learner take a PROPOSAL's or INFORM's txn? ``check_txn(zxid, txn)``:
        # None, or why not (the connection is then dropped, as ZooKeeper's learner
        # does when it cannot deserialize one). Zab moves opaque bytes: the adapter
        # knows how to read them. (A SNAP that is no tree never gets here: the
        # quorum link builds it as it arrives and closes the connection.)
        self.check_txn: Callable[[int, bytes], str | None] = lambda zxid, txn: None
        # With reconfig disabled a membership keeps version 0 (conf says so).
        self.reconfig_enabled = True
        # linearizableReads: a leader confirms read points with a quorum
        # (zkpy.zab.readindex); set before the first step.
        self.linear_reads = False
        # What we say we speak in our hellos (messages.FEATURES); 0 makes us ask
        # for and offer nothing past ZooKeeper's protocol (tests play ZooKeeper so).
        self.features = m.FEATURES
        self.election = Election(my_id, self.voters, self.history.last_zxid, self.current_epoch,
                                 finalize_wait, resend_interval)
        self._ready = Ready()
        self._leave_role: str | None = None  # why our role must end after this step
        self._designated: int | None = None  # ...and whom to go to then (no election)
        # Learners that decided for us before we did (their FOLLOWERINFO came
        # while we were still looking): they are heard once we lead, as
        # Learner.connectToLeader keeps trying until the leader listens.
        self._early: dict[int, m.QuorumPacket] = {}

    # -- the API --------------------------------------------------------------------

    def step(self, event: Event, now: int) -> Ready:
        self.now = now
        if not self.started:
            self.started = True
            if self.standalone:
                self._lead_alone()
            else:
                self.become_looking("start")
        if self._leave_role is not None:
            # Left for the step after the one that decided it, so that the COMMITs
            # already handed out leave before our connections close.
            reason, self._leave_role = self._leave_role, None
            designated, self._designated = self._designated, None
            if designated is not None and self.role != LOOKING:
                self._go_to_designated(designated, reason)
            elif self.role != LOOKING:
                self.become_looking(reason)
        if isinstance(event, Message):
            self._on_message(event.src, event.packet)
        elif isinstance(event, Messages):
            self._on_messages(event.src, event.packets)
        elif isinstance(event, Tick):
            self._on_tick()
        elif isinstance(event, Vote):
            self._on_vote(event)
        elif isinstance(event, Wake):
            if self.role == LOOKING:
                self._election_timer()
        elif isinstance(event, Propose):
            self._on_propose(event)
        elif isinstance(event, ProposeMany):
            self._on_propose_many(event)
        elif isinstance(event, Forward):
            self._on_forward(event)
        elif isinstance(event, Revalidate):
            self._on_revalidate(event)
        elif isinstance(event, ReadIndex):
            self._on_read_index()
        elif isinstance(event, Persisted):
            self.durable_zxid = event.zxid
            if self.leading is not None:
                self.leading.on_persisted(event.zxid)
        elif isinstance(event, ConnectionLost):
            self._on_lost(event.peer)
        elif isinstance(event, StateSent):
            if self.leading is not None:
                self.leading.state_sent(event.learner)
        elif isinstance(event, Heard):
            if self.following is not None and event.peer == self.following.leader:
                self.following.last_heard = self.ticks
        elif not isinstance(event, Start):
            raise TypeError(f"not a Zab event: {event!r}")
        return self._ready

    def ready(self) -> Ready:
        return self._ready

    def has_ready(self) -> bool:
        return not self._ready.empty()

    def advance(self) -> None:
        self._ready = Ready()

    @property
    def can_propose(self) -> bool:
        return self.leading is not None and self.leading.established

    @property
    def next_zxid(self) -> int:
        if self.leading is None or not self.leading.established:
            raise NotLeader("not an established leader")
        return self.leading.next_zxid()

    @property
    def leader_id(self) -> int | None:
        if self.leading is not None:
            return self.my_id
        return self.following.leader if self.following is not None else None

    @property
    def last_zxid(self) -> int:
        return self.history.last_zxid

    def quorum(self, members: set[int]) -> bool:
        return len(members & self.voters) * 2 > len(self.voters)

    @property
    def is_observer(self) -> bool:
        return self.config is not None and self.my_id in self.config.observers

    # -- membership -----------------------------------------------------------------

    def activate(self, config: membership.QuorumConfig) -> bool:
        """Adopt a newer membership; False if it is not newer than ours."""
        old = self.config
        if old is not None and config.version <= old.version:
            return False
        self.config = config
        self.voters = config.voters
        self.election.voters = self.voters
        self._ready.config.append(config)
        if old is None:
            return True
        is_voter = self.my_id in config.voters
        if self.leading is not None and not is_voter:
            # Leading needs a vote: hand over by stepping down once this step's
            # COMMITs are out (at the next event); the new voters elect a leader.
            self._leave_role = f"removed from the voters by the reconfig of 0x{config.version:x}"
        elif self.following is not None and self.following.observer != self.is_observer:
            self._leave_role = ("now an observer" if self.is_observer else
                                "now a follower") + f" (config 0x{config.version:x})"
        # Otherwise a follower keeps following: whether its ACKs count is the
        # leader's business (``quorum`` intersects with the voters).
        return True

    # -- effects the roles use ------------------------------------------------------

    def send(self, dest: int, pkt: m.QuorumPacket) -> None:
        self._ready.send.append((dest, pkt))

    def send_durable(self, dest: int, pkt: m.QuorumPacket) -> None:
        """Send once everything persisted so far is synced (the one place the
        durability-before-acknowledgement rule lives)."""
        self._ready.send_after_persist.append((dest, pkt))

    def persist(self, op: PersistOp) -> None:
        self._ready.persist.append(op)

    def disconnect(self, peer: int, why: str = "") -> None:
        """Close the quorum connection to ``peer``; ``why`` (for the log) when the
        decision is about that peer rather than a role change, which says its own."""
        if peer not in self._ready.disconnect:
            self._ready.disconnect.append(peer)
            if why:
                self._ready.why[peer] = why

    def request(self, src: int, data: bytes, auth: list[Any] | None = None) -> None:
        self._ready.requests.append((src, data, auth))

    def install(self, zxid: int, data: bytes) -> None:
        self._ready.install.append((zxid, data))
        self.applied = zxid

    def commit_upto(self, zxid: int) -> None:
        """Deliver every held txn after ``applied`` up to ``zxid``, in order."""
        for entry in self.history.after(self.applied, zxid):
            self._ready.commit.append(entry)
            self.applied = entry[0]
            config = membership.reconfig_of(entry[1])
            if config is not None:
                self.activate(config.with_version(entry[0]))
        self.history.trim(self.applied, self.log_window)

    def leave_after_step(self, reason: str, designated: int | None = None) -> None:
        """End our role at the next event (what this step sends leaves first),
        for an election, or to go straight to a ``designated`` leader."""
        self._leave_role = reason
        self._designated = designated

    def announce(self, established: bool) -> None:
        leader = self.leader_id
        epoch = self.current_epoch
        if established:
            # QuorumPeer.updateElectionVote (ZOOKEEPER-1732): once synced, the vote
            # we answer looking servers with carries the new epoch, so every
            # member reports the same (leader, peerEpoch), which is what
            # FastLeaderElection compares in the votes of servers that settled.
            _, zxid, voted = self.election.proposal
            self.election.proposal = (epoch, zxid, voted)
        reason = self.last_reason if self.role == LOOKING else ""
        self._ready.roles.append(RoleChange(self.role, leader, epoch, established, reason))

    # -- role transitions -------------------------------------------------------------

    def become_looking(self, reason: str) -> None:
        """Back to election (ZooKeeper: the role's thread exits, the peer LOOKs)."""
        self._drop_role(reason)
        self._ready.votes.extend(self.election.start(self.now))
        self.announce(False)

    def _drop_role(self, reason: str) -> None:
        """Drop the role's connections and state; LOOKING, the election primed
        with what we hold."""
        if self.leading is not None:
            for sid in self.leading.learners:
                self.disconnect(sid)
        if self.following is not None:
            self.disconnect(self.following.leader)
        self.leading = None
        self.following = None
        self.role = LOOKING
        self.last_reason = reason
        self.election.last_zxid = self.history.last_zxid
        self.election.epoch = self.current_epoch

    def _new_leading(self) -> Leading:
        """The leader's state for a new epoch (a test's planted bug swaps in a variant)."""
        return Leading(self)

    def _lead_alone(self) -> None:
        self.role = LEADING
        self.leading = self._new_leading()
        self.leading.begin_standalone()

    def _go_to_designated(self, leader: int, reason: str) -> None:
        """QuorumPeer.updateServerState after a COMMITANDACTIVATE named another
        leader: lead if it is us, follow it otherwise, without an election (the
        others named in it do the same)."""
        if leader == self.my_id and self.my_id not in self.voters:
            self.become_looking(reason)
            return
        self._drop_role(reason)
        self.election.settle(leader)
        self._decided()

    def _decided(self) -> None:
        decided = self.election.decided
        assert decided is not None
        early, self._early = self._early, {}
        if self.election.state == E_LEADING:
            self.role = LEADING
            self.leading = self._new_leading()
            self.announce(False)
            self.leading.begin()
            for src, pkt in early.items():
                if self.leading is not None:
                    self.leading.on_packet(src, pkt)
        else:
            for src in early:
                self.disconnect(src)
            self.role = OBSERVING if self.is_observer else FOLLOWING
            self.following = Following(self, decided.leader, observer=self.is_observer)
            self.announce(False)
            self.following.begin()

    # -- dispatch ------------------------------------------------------------------------

    def _on_messages(self, src: int, packets: list[m.QuorumPacket]) -> None:
        following = self.following
        if following is not None:
            following.deferring = True
        leading = self.leading
        if leading is not None:
            leading.batching = True
        ready = self._ready
        disconnected = ready.disconnect
        try:
            for i, pkt in enumerate(packets):
                if src in disconnected:
                    break  # we dropped the connection: what followed on it is lost
                if i and self._order_breaks(ready, pkt):
                    ready.resume = (src, packets[i:])
                    break
                self._on_message(src, pkt)
        finally:
            if leading is not None:
                leading.batching = False
        if following is not None and self.following is following:
            following.catch_up()
        if leading is not None and self.leading is leading:
            leading.settle_acks()

    def _order_breaks(self, ready: Ready, pkt: m.QuorumPacket) -> bool:
        """Would handling ``pkt`` in this step put its effect out of order? The
        Ready keeps no order between its kinds of output, so the batch is cut
        there and the rest waits for the next step (``Ready.resume``):

        - a leader: a learner's sync (or read point) behind requests of this
          step. Their writes are proposed only when the application has this
          Ready; decided now, the sync would find nothing in flight, and its
          SYNC would overtake their COMMITs (Leader.processSync runs in the
          request pipeline, after the proposals of the requests before it).
        - a learner: a COMMIT (INFORM) after a SYNC. The commits of a Ready
          are applied before its SYNCs answer their clients: a later write of
          a session would be answered before the session's sync.
        """
        if self.leading is not None:
            return (bool(ready.requests) and pkt.type == m.REQUEST
                    and m.request_type(pkt.data) == m.OP_SYNC)
        return ready.syncs > 0 and pkt.type in _APPLIED

    def _on_message(self, src: int, pkt: m.QuorumPacket) -> None:
        if self.leading is not None:
            self.leading.on_packet(src, pkt)
        elif self.following is not None and src == self.following.leader:
            self.following.on_packet(pkt)
        elif pkt.type in (m.FOLLOWERINFO, m.OBSERVERINFO):
            if self.role == LOOKING:
                self._early[src] = pkt
            else:
                self.disconnect(src)  # we follow someone else: refuse

    def _on_tick(self) -> None:
        self.ticks += 1
        if self.leading is not None:
            self.leading.on_tick()
        elif self.following is not None:
            self.following.on_tick()
        else:
            self._election_timer()

    def _election_timer(self) -> None:
        self._ready.votes.extend(self.election.tick(self.now))
        if self.election.state != E_LOOKING:
            self._decided()

    def _on_vote(self, event: Vote) -> None:
        if self.role == LOOKING and event.config and self.config is not None:
            self._adopt_voted_config(event)
        self._ready.votes.extend(self.election.receive(event.notification, self.now))
        if self.role == LOOKING and self.election.state != E_LOOKING:
            self._decided()

    def _adopt_voted_config(self, event: Vote) -> None:
        """FastLeaderElection: a looking peer adopts a newer membership a vote
        carries, which is how a server started with an older (or its own
        guess of the) membership finds whom it may follow."""
        try:
            config = membership.parse_config_text(event.config.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return
        if self.activate(config):
            self.last_reason = f"adopted membership 0x{config.version:x} from server {event.src}"

    def _on_propose(self, event: Propose) -> None:
        if self.leading is None or not self.leading.established:
            raise NotLeader("only an established leader takes proposals")
        self.leading.propose(event.txn, event.zxid)

    def _on_propose_many(self, event: ProposeMany) -> None:
        if self.leading is None or not self.leading.established:
            raise NotLeader("only an established leader takes proposals")
        self.leading.propose_many(event.entries)

    def _on_forward(self, event: Forward) -> None:
        if self.following is None:
            raise NotLeader("no leader to forward to")
        self.send(self.following.leader, m.QuorumPacket(m.REQUEST, -1, event.data, event.auth))

    def _on_revalidate(self, event: Revalidate) -> None:
        if self.following is None:
            raise NotLeader("no leader to revalidate the session with")
        self.send(self.following.leader, m.revalidate_request(event.session_id, event.timeout))

    def _on_read_index(self) -> None:
        lead = self.leading
        if lead is None or not lead.established or lead.reads is None:
            raise NotLeader("only an established leader with linear reads gives read points")
        lead.reads.ask(self.my_id)

    def _on_lost(self, peer: int) -> None:
        self._early.pop(peer, None)
        if self.leading is not None:
            self.leading.on_lost(peer)
        elif self.following is not None and peer == self.following.leader:
            self.become_looking(f"lost the connection to leader {peer}")
