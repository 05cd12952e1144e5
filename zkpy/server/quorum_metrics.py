"""An ensemble member's figures in ZooKeeper's names: election, sync, proposals, commits.

``QuorumFigures`` watches what its ``Replica`` sees (role changes, quorum
packets in and out, the disk's syncs, commit batches) and records, into the
core's ``ServerMetrics``, what ZooKeeper's QuorumPeer, Leader, LearnerHandler,
Follower and CommitProcessor record:

- looking_count, election_time (LOOKING until a leader is chosen),
  follower_sync_time / observer_sync_time (chosen until synced),
  unavailable_time / leader_unavailable_time (LOOKING until serving again);
- the leader's commit_count, quorum_ack_latency, diff_count / snap_count and
  inflight_diff_count / inflight_snap_count (learners syncing at the time),
  learner_handler_qp_size (packets handed to a learner's connection ahead of
  this one in the same turn);
- a learner's learner_proposal_received_count, learner_commit_received_count,
  proposal_latency and commit_propagation_latency (from the leader's txn
  stamp to the PROPOSAL / COMMIT arriving here; a zkpy leader's COMMIT
  commits a run of txns, and each of them counts, as if each had come with a
  COMMIT of its own);
- every member's proposal_ack_creation_latency (txn stamp to our ACK, i.e. to
  our disk syncing it) and the commit stage's queues and times
  (``committed``; the times measured by the replica on the host's clock).

What zkpy has no counterpart for is not recorded: LearnerHandler's queue-time
markers (``learner_handler_qp_time_ms``; zkpy hands a learner's packets to its
connection in the turn that made them), the follower's request queue
(``learner_request_processor_queue_size``; a write is forwarded in the call
that read it) and the commit processor's wait for its worker pool
(``time_waiting_empty_pool_in_commit_processor_read_ms``; zkpy answers a read
in the call that takes it, so no read is in flight when commits are applied).

Latencies measured from a txn's stamp compare the leader's clock with ours,
as ZooKeeper's do (negative ones are dropped, as there). Nothing here runs
for a standalone server: ZooKeeper's standalone server has none of these.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Sequence
from operator import attrgetter, itemgetter
from typing import Any

from zkpy.server.metrics import ServerMetrics
from zkpy.zab import messages as m
from zkpy.zab.events import FOLLOWING, LEADING, LOOKING, OBSERVING, RoleChange

_TXN_TIME = struct.Struct(">q")  # TxnHeader: clientId, cxid, zxid, then time at byte 20
_PROPOSAL, _COMMIT = m.PROPOSAL, m.COMMIT
_SYNC_KINDS = frozenset((m.DIFF, m.SNAP, m.TRUNC))
# (C-level getters: a turn's packets are checked for sync kinds without a Python step each.)
_PACKET, _KIND = itemgetter(1), attrgetter("type")


class QuorumFigures:
    def __init__(self, metrics: ServerMetrics, now: int) -> None:
        self.m = metrics
        self.s = metrics.summary
        self.looking_since: int | None = now  # a member starts by looking
        metrics.looking_count += 1
        metrics.mirror_reads = True  # reads pass a commit stage on a member
        self.unavailable_since: int | None = now
        self.sync_started: int | None = None
        # A learner's (zxid, the leader's txn time) of the proposals whose COMMIT
        # has not come, in zxid order: a COMMIT (or a commit batch, for a sync's
        # commits that come without one) spends them from the left. (A dict
        # emptied from its front made each next first key a scan past the
        # deleted ones: 11 % of a follower's time once one COMMIT covered a
        # run of a thousand.)
        self.stamps: deque[tuple[int, int]] = deque()
        # (zxid, txn time) of the proposals our disk has not synced yet, in zxid
        # order (a leader's own and a learner's received): a sync pops what it
        # made durable from the left, so its cost is what it synced, never what
        # is still in flight.
        self.unsynced: deque[tuple[int, int]] = deque()
        self.released_seen = metrics.released_reads
        self.reads_seen = metrics.reads_answered
        # The summaries observed per packet and per commit, looked up once: they
        # are ServerMetrics' own objects for the server's life (reset in place).
        summary = metrics.summary
        self._proposal_latency_all = summary["proposal_latency"].extend
        self._commit_propagation_all = summary["commit_propagation_latency"].extend
        self._ack_creation = summary["proposal_ack_creation_latency"].extend
        self._commitproc_all = summary["write_commitproc_time_ms"].extend
        self._local_committed_all = summary["local_write_committed_time_ms"].extend
        self._remote_committed_all = summary["server_write_committed_time_ms"].extend
        self._quorum_ack_all = summary["quorum_ack_latency"].extend
        self._qp_size: dict[int, Any] = {}  # learner sid -> its learner_handler_qp_size
        self._final_time = summary["write_final_proc_time_ms"].extend
        self._session_requests = summary["requests_in_session_queue"].add
        self._session_reads = summary["reads_after_write_in_session_queue"].add
        # What each commit batch's queues held, noted as one tuple per batch and
        # handed to their summaries when the figures are folded (``fold``): a
        # batch is often a single commit, and a dozen summaries each would cost
        # more than the commit's own figures.
        self._batches: list[tuple[int, int, int, int, int]] = []
        self._session_batches: list[tuple[int, int, int]] = []
        metrics.folders.append(self.fold)

    # -- roles ------------------------------------------------------------------------

    def role(self, change: RoleChange, now: int) -> None:
        if change.role == LOOKING:
            if self.looking_since is None:
                self.m.looking_count += 1
                self.looking_since = now
            if self.unavailable_since is None:
                self.unavailable_since = now
            self.stamps.clear()
            self.unsynced.clear()
            return
        if self.looking_since is not None:
            self.s["election_time"].add(now - self.looking_since)
            self.looking_since = None
            self.sync_started = now
        if not change.established:
            return
        if self.sync_started is not None and change.role in (FOLLOWING, OBSERVING):
            name = "follower_sync_time" if change.role == FOLLOWING else "observer_sync_time"
            self.s[name].add(now - self.sync_started)
        self.sync_started = None
        if self.unavailable_since is not None:
            self.s["unavailable_time"].add(now - self.unavailable_since)
            if change.role == LEADING:
                self.s["leader_unavailable_time"].add(now - self.unavailable_since)
            self.unavailable_since = None

    # -- packets --------------------------------------------------------------------

    def received(self, packets: Iterable[Any], now: int) -> None:
        """Quorum packets from the leader (a learner's view), as they arrived."""
        stamps = self.stamps
        unsynced = self.unsynced
        proposals = commits = 0
        latencies: list[int] = []  # (one call for the read's proposals, not one each)
        pkt: m.QuorumPacket  # (typed: compiled, its fields are read directly)
        for pkt in packets:
            kind = pkt.type
            if kind == _PROPOSAL:
                proposals += 1
                data = pkt.data
                if data is not None and len(data) >= 28:
                    stamp: int = _TXN_TIME.unpack_from(data, 20)[0]
                    entry = (pkt.zxid, stamp)  # (one tuple in both queues)
                    stamps.append(entry)
                    unsynced.append(entry)
                    if now >= stamp:
                        latencies.append(now - stamp)
            elif kind == _COMMIT:
                # A COMMIT commits every txn up to its zxid: one each from a
                # ZooKeeper leader, one for a run from zkpy's (messages.WATERMARKS).
                # Each txn it commits counts, with its propagation time, so the
                # figures are per commit whichever leader sent them. (``committed``
                # drops the stamps of commits that came without a COMMIT: a sync's.)
                spent = []
                while stamps and stamps[0][0] <= pkt.zxid:
                    spent.append(stamps.popleft()[1])
                commits += len(spent) or 1
                if spent:
                    self._commit_propagation_all([now - t for t in spent if now >= t])
        if latencies:
            self._proposal_latency_all(latencies)
        if proposals:
            self.m.learner_proposal_received_count += proposals
        if commits:
            self.m.learner_commit_received_count += commits

    def sent(self, sends: Sequence[tuple[int, Any]], learners: dict[int, Any]) -> None:
        """The leader's packets of one Ready, to its learners."""
        # learner_handler_qp_size: each packet, how many were handed to that
        # learner's connection ahead of it in this turn (0, 1, 2, ...).
        counts: dict[int, int] = {}  # (a Counter's set-up cost more than the count, per turn)
        for dest, _ in sends:
            counts[dest] = counts.get(dest, 0) + 1
        for dest, n in counts.items():
            if dest in learners:
                qp_size = self._qp_size.get(dest)
                if qp_size is None:
                    qp_size = self._learner_key(dest)
                qp_size.extend(range(n))
        if _SYNC_KINDS.isdisjoint(map(_KIND, map(_PACKET, sends))):
            return  # (the usual turn: no learner starts a sync in it)
        syncing = sum(1 for lr in learners.values() if lr.phase != "synced")
        for dest, pkt in sends:
            kind = pkt.type
            if kind in _SYNC_KINDS and dest in learners:
                if kind == m.SNAP:
                    self.m.snap_count += 1
                    self.s["inflight_snap_count"].add(syncing)
                else:  # TRUNC is a kind of DIFF for ZooKeeper's LearnerHandler
                    self.m.diff_count += 1
                    self.s["inflight_diff_count"].add(syncing)

    def _learner_key(self, dest: int) -> Any:
        """A learner's first packet: its keys appear, as LearnerHandler's do.
        LearnerHandler's queue-time markers have no counterpart here: that key
        is there, with nothing observed."""
        key = str(dest)
        self.m.sets["learner_handler_qp_time_ms"].get(key)
        qp_size = self._qp_size[dest] = self.m.sets["learner_handler_qp_size"].get(key)
        return qp_size

    # -- disk and commits -------------------------------------------------------------

    def proposing(self, proposals: Iterable[tuple[int, int]]) -> None:
        """A leader hands (zxid, txn time) of its proposals to its disk."""
        self.unsynced.extend(proposals)

    def refused(self, count: int) -> None:
        """The last ``count`` proposals handed over were not proposed after all."""
        for _ in range(min(count, len(self.unsynced))):
            self.unsynced.pop()

    def persisted(self, last_zxid: int, now: int) -> None:
        """Our disk synced up to ``last_zxid``: the ACKs for the proposals it made
        durable are made now (proposal_ack_creation_latency, from their stamps)."""
        unsynced = self.unsynced
        stamps = []
        while unsynced and unsynced[0][0] <= last_zxid:
            stamps.append(unsynced.popleft()[1])
        if stamps:
            self._ack_creation([now - t for t in stamps if now >= t])

    def committed(self, done: Sequence[tuple[Any, bool]], waited: Sequence[int],
                  took: Sequence[int], batch_ms: int, leading: bool, now: int,
                  outstanding: int) -> None:
        """One batch of commits applied (Leader.commit and the CommitProcessor):
        each commit's request and whether it is one of ours, as the replica timed
        them on the host's clock (whole ms): each one's wait since the batch was
        handed over, how long applying and answering it took, the whole batch.
        ``outstanding``: our writes waiting for their commit when the batch came
        (these among them)."""
        n = len(done)
        metrics = self.m
        metrics.request_commit_queued += n
        if leading:
            metrics.commit_count += n
        self._final_time(took)
        # (Comprehensions, one per figure: a loop calling each figure per commit
        # cost more than the commit's own figures.)
        mine = [req for req, ours in done if ours]
        if len(mine) == n:
            self._local_committed_all(waited)
        else:
            self._local_committed_all([w for (_, ours), w in zip(done, waited, strict=True)
                                       if ours])
            self._remote_committed_all([w for (_, ours), w in zip(done, waited, strict=True)
                                        if not ours])
        self._commitproc_all([now - req.created if now > req.created else 0 for req in mine])
        if leading:
            self._quorum_ack_all([now - req.hdr.time for req, _ in done
                                  if now >= req.hdr.time])
        stamps = self.stamps
        if stamps:  # stamps left by commits that came without a COMMIT (a sync's)
            last = done[-1][0].hdr.zxid
            while stamps and stamps[0][0] <= last:
                stamps.popleft()
        sessions = {req.session_id: req.conn for req in mine}
        # Reads the commit stage passed since the last batch (answered at once, or
        # released behind a write), and the reads still waiting behind a write.
        answered = metrics.reads_answered
        reads, self.reads_seen = answered - self.reads_seen, answered
        self._batches.append((n, outstanding, batch_ms, reads, metrics.reads_waiting))
        released = metrics.released_reads - self.released_seen
        self.released_seen = metrics.released_reads
        if sessions:
            self._session_queues(sessions, released)

    def _session_queues(self, sessions: dict[int, Any], released: int) -> None:
        """CommitProcessor's per-session queues: the sessions whose writes committed
        now (each queue held the committed write and what waits behind it; a
        learner's session has only its write here), and the reads they released."""
        drained = 0
        for conn in sessions.values():
            pending = conn.pending if conn is not None else ()
            freed = conn.released if conn is not None else 0  # reads its writes released
            # The session's queue held its committed write, the reads released
            # behind it and what still waits.
            self._session_requests(len(pending) + freed + 1)
            if not pending:
                drained += 1
            self._session_reads(freed)
            if conn is not None:
                conn.released = 0
        self._session_batches.append((len(sessions), drained, released))

    def fold(self) -> None:
        """Hand the commit batches noted since the last fold to their summaries."""
        s = self.s
        batches, self._batches = self._batches, []
        if batches:
            n, outstanding, batch_ms, reads, waiting = zip(*batches, strict=True)
            s["commit_commit_proc_req_queued"].extend(n)
            s["write_commit_proc_issued"].extend(n)
            s["write_commit_proc_req_queued"].extend(outstanding)
            s["write_batch_time_in_commit_processor"].extend(batch_ms)
            s["commit_process_time"].extend(batch_ms)
            s["read_commit_proc_issued"].extend(reads)
            s["read_commit_proc_req_queued"].extend(waiting)
        session_batches, self._session_batches = self._session_batches, []
        if session_batches:
            queues, drained, released = zip(*session_batches, strict=True)
            s["pending_session_queue_size"].extend(queues)
            s["session_queues_drained"].extend(drained)
            s["reads_issued_from_session_queue"].extend(released)
