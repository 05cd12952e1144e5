"""One server's Zab ``Peer`` joined to its ``ServerCore``, with no I/O.

Every server is a replica: an ensemble member, or a standalone server as an
ensemble of one (``Peer(standalone=True)``). The adapter (``zkpy.net.member``,
or a simulator) steps events in through ``Replica.step`` and tells it when its
disk synced (``persisted``); a ``zkpy.zab.driver.Driver`` carries each Ready
out through the adapter's links and disk and hands the rest back here
(``on_roles``, ``on_ready``). Everything that touches the server's state
happens here, in the order ``zkpy.zab.peer`` prescribes:

- modes: the core serves clients only while the peer is established (a
  standalone server at once; a member synced with an established leader).
  The replica tells the core its mode (``ServerCore.become``); losing it
  closes every client connection and forgets what was in flight, as
  ZooKeeper shuts its ZooKeeperServer down; clients reconnect (to any
  member) with their session.
- a leader (or standalone server) prepares every write, its own clients' and
  those its learners forward (REQUEST), and proposes it with the zxid Zab
  expects; it alone expires sessions (touched by its clients and by
  learners' PING reports) and reaps containers.
- a follower forwards writes and syncs to the leader and answers its client
  when the commit (or the leader's SYNC) comes back, matching it by
  (session id, cxid) as ZooKeeper's CommitProcessor does.
- commits are applied in zxid order on every member; a SNAP replaces the
  tree and sessions.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.codec import JuteError
from zkpy.jute.opcodes import (
    OP_closeSession,
    OP_createSession,
    OP_sync,
)
from zkpy.jute.protocol import Err, Op, ZkError
from zkpy.jute.requests import decode_body
from zkpy.server import pipeline_metrics
from zkpy.server.core import ServerCore
from zkpy.server.metrics import NS_PER_MS
from zkpy.server.modes import Mode
from zkpy.server.prep import MALFORMED, Request
from zkpy.server.quorum_metrics import QuorumFigures
from zkpy.server.readonly import ReadOnlyServer
from zkpy.storage.formats import decode_entry, encode_txn
from zkpy.storage.snapbuild import BuiltSnapshot
from zkpy.storage.snapshot import newest_change, parse_snapshot
from zkpy.zab import messages as m
from zkpy.zab.driver import Disk, Driver, Durable, Links
from zkpy.zab.events import (
    FOLLOWING,
    LEADING,
    LOOKING,
    OBSERVING,
    Event,
    Forward,
    Message,
    Messages,
    NotLeader,
    ProposeMany,
    ReadIndex,
    Ready,
    Revalidate,
    RoleChange,
)
from zkpy.zab.peer import Peer

log = logging.getLogger("zkpy.quorum")

_TOUCH = struct.Struct(">qi")  # Learner.ping: session id, timeout
_INT = struct.Struct(">i")
ROLE_NAMES = {0: "looking", FOLLOWING: "follower", LEADING: "leader", OBSERVING: "observer"}
# linearizableReads: a learner asks the leader for a read point with a sync of
# session 0 (no client has it), in ``syncs`` as this marker (zkpy.zab.readindex).
_READ_POINT = Request(0, 0, Op.sync, None, [], None)
_READ_POINT_DATA = m.request_data(0, 0, Op.sync, S.SyncRequest("/").encode())


class Replica:
    def __init__(self, core: ServerCore, peer: Peer, links: Links, disk: Disk,
                 after_ready: Callable[[], None] | None = None) -> None:
        self.core = core
        self.peer = peer
        self.driver = Driver(peer, links, disk, self, after_ready)
        self.now = core.now
        self.role = 0
        self.established = False
        self.leader: int | None = None
        self.proposed: dict[int, Request] = {}  # leader: zxid -> its request
        self._to_propose: list[Request] = []  # prepared this turn, for ``flush``
        self.waiting: dict[tuple[int, int], Request] = {}  # follower: forwarded writes
        self.syncs: deque[Request] = deque()  # follower: syncs awaiting the leader's SYNC
        self.revalidating: deque[Any] = deque()  # learner: connections awaiting REVALIDATE
        self.owners: dict[int, int] = {}  # leader: session id -> the member serving it
        self.role_changes = 0  # how often the role changed (tests watch it for flaps)
        self.led_since = 0
        self.conf: list[tuple[str, object]] = []  # QuorumPeerConfig's lines of ``conf``
        self._sizes = (-1, -1, -1)  # last, min, max proposal bytes
        self.read_only = ReadOnlyServer(core)  # readonlymode.enabled: serves while LOOKING
        # An ensemble member's election, sync, proposal and commit figures (none standalone).
        self.figures = None if peer.standalone else QuorumFigures(core.metrics, core.now)
        core.attach(self)
        peer.linear_reads = core.settings.linear_reads
        peer.snapshot_source = self._snapshot
        peer.ping_data = self._touch_report
        peer.revalidate = self._revalidate
        # A learner's txns from its leader, decoded once when they arrived
        # (``_check_txn``) and used when they are applied. (A SNAP's tree is
        # built by the quorum link as it arrives: ``zkpy.storage.snapbuild``.)
        peer.check_txn = self._check_txn
        self._decoded: dict[int, tuple[S.TxnHeader, Any, S.TxnDigest | None]] = {}

    # -- stepping ---------------------------------------------------------------------

    def step(self, event: Event, now: int) -> None:
        self.now = now
        self.core.at(now)
        if self.figures is not None and self.role != LEADING:
            if isinstance(event, Messages):
                self.figures.received(event.packets, now)
            elif isinstance(event, Message):
                self.figures.received((event.packet,), now)
        self.driver.step(event, now)
        self._settle(now)

    def persisted(self, after: list[Durable], last_zxid: int, now: int) -> None:
        """The disk synced everything handed to it so far (``Disk``'s callback)."""
        self.now = now
        self.core.at(now)
        if self.figures is not None:
            self.figures.persisted(last_zxid, now)
        self.driver.persisted(after, last_zxid, now)
        self._settle(now)

    def _settle(self, now: int) -> None:
        self.read_only.poll(now)
        self.core.flush()

    # -- what the driver hands us ----------------------------------------------------

    def on_roles(self, changes: list[RoleChange]) -> None:
        for change in changes:
            self._role(change)

    def on_ready(self, ready: Ready) -> None:
        for zxid, data in ready.install:
            self._install(zxid, data)
        if self.figures is not None and ready.send and self.peer.leading is not None:
            self.figures.sent(ready.send, self.peer.leading.learners)
        if ready.commit:
            self._commit_batch(ready.commit)
        for src, data, auth in ready.requests:
            self._learner_request(src, data, auth)
        if ready.requests:
            self.flush()  # proposed before Zab decides a sync behind them (Ready.resume)
        for src, data in ready.pings:
            self._learner_touches(src, data)
        for _ in range(ready.syncs):
            self._synced()
        for session_id, valid in ready.revalidated:
            self._revalidated(session_id, valid)
        for _ in range(ready.read_points):
            self._read_point_reached()
        for config in ready.config:
            # After the commits: a committed reconfig already set the node itself.
            self.core.set_config(config.text(), config.version)
            log.info("Membership 0x%x active: voters %s, observers %s", config.version,
                     sorted(config.voters), sorted(config.observers))

    # -- roles ------------------------------------------------------------------------

    def _role(self, change: RoleChange) -> None:
        if self.read_only.role(change.role == LOOKING, self.now):
            self._stand_down(f"read-only mode ends: {ROLE_NAMES.get(change.role, change.role)}")
        was_serving = self.established
        if self.figures is not None:
            self.figures.role(change, self.now)
        self._decoded.clear()  # a new leader sends its own proposals
        self.role = change.role
        self.leader = change.leader
        self.role_changes += 1
        if not change.established:
            if was_serving:
                why = f": {change.reason}" if change.reason else ""
                self._stand_down(f"now {ROLE_NAMES.get(change.role, change.role)}{why}")
            else:
                log.info("Peer state: %s (leader %s, epoch %d)%s",
                         ROLE_NAMES.get(change.role, change.role), change.leader, change.epoch,
                         f": {change.reason}" if change.reason else "")
            self.established = False
            return
        self.established = True
        if change.role == LEADING and self.peer.standalone:
            self.core.become(Mode.STANDALONE, next_zxid=self.peer.next_zxid)
            log.info("Serving clients as a standalone server at zxid 0x%x", self.core.last_zxid)
        elif change.role == LEADING:
            self.owners = {}  # SessionTrackerImpl starts with no owners
            self.led_since = self.now
            self._sizes = (-1, -1, -1)
            membership = self._membership if self.peer.config is not None else None
            self.core.become(Mode.LEADING, next_zxid=self.peer.next_zxid, membership=membership,
                             check_session=self._check_session)
            log.info("LEADING - epoch %d established with a quorum; serving clients", change.epoch)
        else:
            observing = change.role == OBSERVING
            self.core.become(Mode.OBSERVING if observing else Mode.FOLLOWING)
            log.info("%s - leader %s, epoch %d; synced and serving clients",
                     "OBSERVING" if observing else "FOLLOWING", change.leader, change.epoch)

    def _stand_down(self, why: str) -> None:
        self.core.become(Mode.NOT_SERVING, why)
        self._to_propose.clear()
        self.proposed.clear()
        self.waiting.clear()
        self.syncs.clear()
        self.revalidating.clear()
        self.established = False

    def _refuse(self, req: Request) -> None:
        conn = req.conn
        if conn is not None:
            conn.abort("the server is not serving (no quorum)")

    # -- the leader's side -------------------------------------------------------------

    def propose(self, req: Request) -> None:
        """ServerCore's commit seam on the leader: the prepared write goes to Zab with
        the others of this turn (``flush``)."""
        self._to_propose.append(req)

    def flush(self) -> None:
        """The end of a turn (ServerCore.flush): every write prepared in it is
        proposed in one Zab step, so they share one disk batch."""
        if not self._to_propose:
            return
        reqs, self._to_propose = self._to_propose, []
        started = self.core.host.monotonic_ns()
        entries: list[tuple[int | None, bytes]] = []
        _, lo, hi = self._sizes
        size = 0
        for req in reqs:
            hdr: S.TxnHeader = req.hdr  # (typed: compiled, its fields are read directly)
            zxid = hdr.zxid
            self.proposed[zxid] = req
            txn = encode_txn(hdr, req.txn, req.digest)
            size = len(txn)
            lo, hi = size if lo < 0 else min(lo, size), max(hi, size)
            entries.append((zxid, txn))
        self._sizes = (size, lo, hi)
        figures = self.figures
        if figures is not None:  # (before the step: it may sync them at once)
            figures.proposing([(req.hdr.zxid, req.hdr.time) for req in reqs])
        try:
            self.driver.step(ProposeMany(entries), self.now)
        except NotLeader as e:
            log.warning("Cannot propose 0x%x: %s", reqs[e.accepted].hdr.zxid, e)
            if figures is not None:
                figures.refused(len(reqs) - e.accepted)
            for req in reqs[e.accepted:]:
                self.proposed.pop(req.hdr.zxid, None)
                self._refuse(req)
        took = (self.core.host.monotonic_ns() - started) // NS_PER_MS
        pipeline_metrics.proposed(self.core.metrics, reqs, self.now, not self.peer.standalone,
                                  took)

    def _membership(self) -> tuple[Any, bool, set[int]]:
        """For a reconfig's checks: the active membership, whether a reconfig is in
        flight, and who is synced with us (Leader.isQuorumSynced's candidates)."""
        peer = self.peer
        lead = peer.leading
        assert peer.config is not None and lead is not None
        synced = {peer.my_id}
        synced.update(sid for sid, lr in lead.learners.items()
                      if lr.phase == "synced" and not lr.observer)
        return peer.config, lead.pending_config is not None, synced

    def _learner_request(self, src: int, data: bytes, auth: list[Any] | None) -> None:
        try:
            sid, cxid, op = m.request_head(data)
            if op == OP_createSession:
                body: Any = _INT.unpack_from(data, 16)[0]
            else:
                try:
                    body = decode_body(op, data[8:])
                except JuteError:
                    body = MALFORMED  # prepared as MARSHALLINGERROR, as for our own clients
        except (m.PacketError, KeyError, struct.error) as e:
            log.warning("Dropping a malformed request forwarded by server %d: %s", src, e)
            return
        req = Request(sid, cxid, op, body, list(auth or []), None)
        req.origin = src
        req.created = self.now
        self.core.submit(req, self.now)

    def _revalidate(self, learner: int, session_id: int, timeout: int) -> bool:
        """Leader.revalidateSession: a global session that is alive is touched and
        from now on owned by the learner that asked (its client reconnected there)."""
        self.core.metrics.revalidate_count += 1  # (LearnerHandler's, on a REVALIDATE)
        session = self.core.sessions.get(session_id)
        if session is None or session.closing or session.local:
            return False
        self.core.sessions.touch(session_id, self.now)
        self.owners[session_id] = learner
        return True

    def revalidate(self, conn: Any, session_id: int, timeout: int) -> bool:
        """ServerCore's seam for a global session reconnecting here: True when it may
        reopen at once (the leader or a standalone server checked it on the spot; a
        leader now owns it); False when a learner asked its leader (REVALIDATE) and
        ``conn.revalidated`` brings the answer."""
        if self.peer.following is None:
            if self.peer.leading is not None and not self.peer.standalone:
                self.owners[session_id] = self.peer.my_id  # it is served through us now
            return True
        self.revalidating.append(conn)
        try:
            self.driver.step(Revalidate(session_id, timeout), self.now)
        except NotLeader:
            self.revalidating.remove(conn)
            conn.abort("the server is not serving (no quorum)")
        return False

    def _check_session(self, req: Request) -> None:
        """PrepRequestProcessor's checkSession, on the leader: a write of a session
        that is gone is SESSIONEXPIRED; one that arrives through a member other
        than the one the session last (re)connected to is SESSIONMOVED (a request
        left behind on its old connection)."""
        owner = self.peer.my_id if req.origin is None else req.origin
        if req.type == OP_createSession:
            self.owners[req.session_id] = owner
            return
        if req.type == OP_closeSession:
            return  # not checked: "the session is being closed anyway"
        session = self.core.sessions.get(req.session_id)
        if session is None:
            if self.core.settings.local_sessions:
                return  # another member's local session: it alone knows it
            raise ZkError(Err.SESSIONEXPIRED)
        if session.closing:
            raise ZkError(Err.SESSIONEXPIRED)
        if session.local:
            return
        if self.owners.setdefault(req.session_id, owner) != owner:
            raise ZkError(Err.SESSIONMOVED)

    def _learner_touches(self, src: int, data: bytes) -> None:
        sessions = self.core.sessions
        for off in range(0, len(data) - _TOUCH.size + 1, _TOUCH.size):
            sid, _timeout = _TOUCH.unpack_from(data, off)
            sessions.touch(sid, self.now)

    # -- the follower's side -----------------------------------------------------------

    def forward(self, req: Request) -> None:
        """ServerCore's seam on a follower: a write (or a sync) for the leader."""
        if req.type == OP_sync:
            self.syncs.append(req)
            body = req.raw[8:]
        else:
            body = _INT.pack(req.body) if req.type == OP_createSession else req.raw[8:]
            self.waiting[(req.session_id, req.cxid)] = req
        self._send_request(req, body)

    def _send_request(self, req: Request, body: bytes) -> None:
        data = m.request_data(req.session_id, req.cxid, req.type, body)
        try:
            self.driver.step(Forward(data, req.ids), self.now)
        except NotLeader:
            self._refuse(req)

    def read_point(self) -> bool:
        """ServerCore's seam for linearizable reads: a read point from the leader
        (a ``ReadIndex`` step when we lead, a sync of session 0 when we learn)."""
        try:
            if self.peer.following is not None:
                self.syncs.append(_READ_POINT)
                self.driver.step(Forward(_READ_POINT_DATA, []), self.now)
            else:
                self.driver.step(ReadIndex(), self.now)
        except NotLeader:
            if self.syncs and self.syncs[-1] is _READ_POINT:
                self.syncs.pop()
            return False
        return True

    def _read_point_reached(self) -> None:
        gate = self.core.read_gate
        if gate is not None:
            gate.reached()

    def _revalidated(self, session_id: int, valid: bool) -> None:
        """Learner.revalidate: the answer goes to the connection that asked."""
        for conn in self.revalidating:
            if conn.session_id == session_id:
                self.revalidating.remove(conn)
                conn.revalidated(valid, self.now)
                return
        log.warning("REVALIDATE answer for session 0x%x, which no client is waiting on",
                    session_id)

    def _synced(self) -> None:
        if not self.syncs:
            log.warning("SYNC from the leader with no sync waiting; ignored")
            return
        req = self.syncs.popleft()
        if req is _READ_POINT:
            self._read_point_reached()
            return
        self.core.outstanding_writes -= 1  # counted when ServerCore.submit forwarded it
        if req.conn is not None:
            req.conn.synced(req)

    def _touch_report(self) -> bytes | None:
        touched = self.core.sessions.touched
        if not touched:
            return None
        data = b"".join(_TOUCH.pack(sid, timeout) for sid, timeout in touched.items())
        touched.clear()
        return data

    # -- every member --------------------------------------------------------------------

    def _commit_batch(self, commits: list[tuple[int, bytes]]) -> None:
        if self.figures is None:
            for zxid, txn in commits:
                self._commit(zxid, txn)
            return
        # Timed on the host's clock: each commit's wait since the batch was handed
        # over (commitRecvTime) and how long applying and answering it took.
        outstanding = self.core.outstanding_writes
        # (One clock read per commit: each begins as the one before it ends.)
        clock = self.core.host.monotonic_ns
        marks = [clock()]  # the batch handed over, then each commit's end
        done = []
        for zxid, txn in commits:
            done.append(self._commit(zxid, txn))
            marks.append(clock())
        received = marks[0]
        waited = [(start - received) // NS_PER_MS for start in marks[:-1]]
        took = [(end - start) // NS_PER_MS for start, end in zip(marks[:-1], marks[1:], strict=True)]
        self.figures.committed(done, waited, took, (marks[-1] - received) // NS_PER_MS,
                               self.role == LEADING, self.now, outstanding)

    def _commit(self, zxid: int, txn: bytes) -> tuple[Request, bool]:
        req = self.proposed.pop(zxid, None)
        ours = req is not None
        if req is None:
            decoded = self._decoded.pop(zxid, None)
            hdr, body, digest = decoded if decoded is not None else decode_entry(txn)
            req = self.waiting.pop((hdr.clientId, hdr.cxid), None)
            ours = req is not None
            if req is None:
                req = Request(hdr.clientId, hdr.cxid, hdr.type, None, [], None)
            req.hdr, req.txn, req.digest = hdr, body, digest  # the leader's digest, checked
        self.core.commit(req, ours)
        return req, ours

    def _install(self, zxid: int, data: bytes) -> None:
        if isinstance(data, BuiltSnapshot):
            tree, sessions = data.tree, data.sessions  # built while the stream came in
        else:
            tree, sessions = parse_snapshot(data, zxid, trailer=None)  # a trailer if any
            if tree.digests.target is None:
                # Streamed: it may be fuzzy up to the newest change its nodes record.
                tree.digests.fuzzy_until(newest_change(tree))
        self.core.replace_state(tree, sessions, self.now)
        log.info("Installed the leader's snapshot at zxid 0x%x: %d znodes, %d sessions",
                 zxid, len(tree), len(sessions))

    def _check_txn(self, zxid: int, txn: bytes) -> str | None:
        """Follower.processPacket deserializes a PROPOSAL as it arrives: one that
        does not decode, or whose header names another zxid, is not taken."""
        try:
            hdr, body, digest = decode_entry(txn)
        except JuteError as e:
            return f"its txn does not decode: {e}"
        if hdr.zxid != zxid:
            return f"its txn's header says zxid 0x{hdr.zxid:x}"
        self._decoded[zxid] = (hdr, body, digest)
        return None

    def _snapshot(self) -> bytes:
        from zkpy.storage.snapshot import snapshot_bytes

        return snapshot_bytes(self.core.tree, self.core.session_timeouts())

    # -- what the four-letter words report ------------------------------------------------

    @property
    def mode(self) -> str:
        """What ``srvr`` says after ``Mode:`` ("looking" while not serving)."""
        return self.core.mode.value

    def proposal_sizes(self) -> tuple[int, int, int]:
        return self._sizes

    def leader_uptime(self) -> int:
        return max(self.now - self.led_since, 0) if self.mode == "leader" else 0

    def peer_state(self) -> str:
        """QuorumPeer.getDetailedPeerState: role and Zab phase, "leading - broadcast"."""
        if self.peer.leading is not None:
            return "leading - " + ("broadcast" if self.peer.leading.established
                                   else "synchronization")
        if self.peer.following is not None:
            role = "observing - " if self.peer.following.observer else "following - "
            return role + ("broadcast" if self.established else "synchronization")
        return "looking - election"

    def read_rounds(self) -> int:
        """linearizableReads: confirmation rounds this leadership completed."""
        lead = self.peer.leading
        return lead.reads.rounds_confirmed if lead is not None and lead.reads is not None else 0

    def learner_ids(self) -> list[int]:
        lead = self.peer.leading
        return sorted(lead.learners) if lead is not None else []

    def learners(self) -> tuple[int, int, int, int, int]:
        """On a leader: (learners connected, synced voting followers, synced
        non-voting followers, synced observers, pending syncs)."""
        lead = self.peer.leading
        if lead is None:
            return 0, 0, 0, 0, 0
        voting = non_voting = observers = 0
        for sid, lr in lead.learners.items():
            if lr.phase != "synced":
                continue
            if lr.observer:
                observers += 1
            elif sid in self.peer.voters:
                voting += 1
            else:
                non_voting += 1
        pending = sum(len(v) for v in lead.pending_syncs.values())
        return len(lead.learners), voting, non_voting, observers, pending
