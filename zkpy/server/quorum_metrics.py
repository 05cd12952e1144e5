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
  stamp to the PROPOSAL / COMMIT arriving here);
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zkpy.server.metrics import ServerMetrics
from zkpy.zab import messages as m
from zkpy.zab.events import FOLLOWING, LEADING, LOOKING, OBSERVING, RoleChange

_TXN_TIME = struct.Struct(">q")  # TxnHeader: clientId, cxid, zxid, then time at byte 20


@dataclass
class CommitTimes:
    """A commit batch as the replica timed it on the host's clock (whole ms)."""

    waited: list[int]  # each commit: from the batch being handed over to its turn
    took: list[int]  # each commit: applying it and answering its client
    batch: int  # the whole batch


def txn_time(data: bytes) -> int | None:
    if len(data) < 28:
        return None
    value: int = _TXN_TIME.unpack_from(data, 20)[0]
    return value


class QuorumFigures:
    def __init__(self, metrics: ServerMetrics, now: int) -> None:
        self.m = metrics
        self.s = metrics.summary
        self.looking_since: int | None = now  # a member starts by looking
        metrics.looking_count += 1
        metrics.mirror_reads = True  # reads pass a commit stage on a member
        self.unavailable_since: int | None = now
        self.sync_started: int | None = None
        self.stamps: dict[int, int] = {}  # learner: zxid -> the leader's txn time
        self.synced_zxid = 0
        self.released_seen = metrics.released_reads
        self.reads_seen = metrics.reads_answered

    # -- roles ------------------------------------------------------------------------

    def role(self, change: RoleChange, now: int) -> None:
        if change.role == LOOKING:
            if self.looking_since is None:
                self.m.looking_count += 1
                self.looking_since = now
            if self.unavailable_since is None:
                self.unavailable_since = now
            self.stamps.clear()
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

    def received(self, pkt: Any, now: int) -> None:
        """A quorum packet from the leader (a learner's view)."""
        kind = pkt.type
        if kind == m.PROPOSAL:
            self.m.learner_proposal_received_count += 1
            stamp = txn_time(pkt.data or b"")
            if stamp is not None:
                self.stamps[pkt.zxid] = stamp
                if now >= stamp:
                    self.s["proposal_latency"].add(now - stamp)
        elif kind == m.COMMIT:
            self.m.learner_commit_received_count += 1
            stamp = self.stamps.get(pkt.zxid)
            if stamp is not None and now >= stamp:
                self.s["commit_propagation_latency"].add(now - stamp)

    def sent(self, sends: Iterable[tuple[int, Any]], learners: dict[int, Any]) -> None:
        """The leader's packets of one Ready, to its learners."""
        queued: dict[int, int] = {}
        qp_size = self.m.sets["learner_handler_qp_size"]
        # LearnerHandler's queue-time markers have no counterpart here: the key is
        # there for each learner, as ZooKeeper's is from its first packet, with
        # nothing observed.
        qp_time = self.m.sets["learner_handler_qp_time_ms"].by_key
        syncing = None
        for dest, pkt in sends:
            if dest not in learners:
                continue
            key = str(dest)
            ahead = queued.get(dest, 0)
            queued[dest] = ahead + 1
            qp_size.add(key, ahead)
            if key not in qp_time:
                self.m.sets["learner_handler_qp_time_ms"].get(key)
            kind = pkt.type
            if kind == m.DIFF or kind == m.SNAP or kind == m.TRUNC:
                if syncing is None:
                    syncing = sum(1 for lr in learners.values() if lr.phase != "synced")
                if kind == m.SNAP:
                    self.m.snap_count += 1
                    self.s["inflight_snap_count"].add(syncing)
                else:  # TRUNC is a kind of DIFF for ZooKeeper's LearnerHandler
                    self.m.diff_count += 1
                    self.s["inflight_diff_count"].add(syncing)

    # -- disk and commits -------------------------------------------------------------

    def persisted(self, last_zxid: int, now: int, stamps: Sequence[int]) -> None:
        """Our disk synced up to ``last_zxid``: the ACKs for those proposals are made
        now. ``stamps``: the leader's txn times of what a leader proposed there."""
        ack = self.s["proposal_ack_creation_latency"]
        if stamps:
            ack.extend([now - t for t in stamps if now >= t])
            return
        if self.stamps:
            ack.extend([now - t for z, t in self.stamps.items()
                        if self.synced_zxid < z <= last_zxid and now >= t])
        self.synced_zxid = max(self.synced_zxid, last_zxid)

    def committed(self, reqs: Sequence[Any], ours: Sequence[bool], leading: bool,
                  now: int, outstanding: int, times: CommitTimes) -> None:
        """One batch of commits applied (Leader.commit and the CommitProcessor)."""
        n = len(reqs)
        metrics, s = self.m, self.s
        metrics.request_commit_queued += n
        s["commit_commit_proc_req_queued"].add(n)
        # Our writes waiting for their commit when this batch came (these among them).
        s["write_commit_proc_req_queued"].add(outstanding)
        s["write_commit_proc_issued"].add(n)
        s["write_batch_time_in_commit_processor"].add(times.batch)
        s["commit_process_time"].add(times.batch)
        s["write_final_proc_time_ms"].extend(times.took)
        commitproc, local, remote = (s["write_commitproc_time_ms"],
                                     s["local_write_committed_time_ms"],
                                     s["server_write_committed_time_ms"])
        quorum_ack = s["quorum_ack_latency"] if leading else None
        sessions: dict[int, Any] = {}
        for req, mine, waited in zip(reqs, ours, times.waited, strict=True):
            if mine:
                commitproc.add(max(now - req.created, 0))
                local.add(waited)
                sessions[req.session_id] = req.conn
            else:
                remote.add(waited)
            if quorum_ack is not None and now >= req.hdr.time:
                quorum_ack.add(now - req.hdr.time)
            self.stamps.pop(req.hdr.zxid, None)
        if leading:
            metrics.commit_count += n
        self._session_queues(sessions)

    def _session_queues(self, sessions: dict[int, Any]) -> None:
        """CommitProcessor's per-session queues: the sessions whose writes committed
        now (each queue held the committed write and what waits behind it; a
        learner's session has only its write here), and the reads they released."""
        s = self.s
        released = self.m.released_reads - self.released_seen
        self.released_seen = self.m.released_reads
        # Reads the commit stage passed since the last batch (answered at once, or
        # released behind a write), and the reads still waiting behind a write.
        answered = self.m.reads_answered
        reads, self.reads_seen = answered - self.reads_seen, answered
        s["read_commit_proc_issued"].add(reads)
        s["read_commit_proc_req_queued"].add(self.m.reads_waiting)
        if not sessions:
            return
        s["pending_session_queue_size"].add(len(sessions))
        drained = 0
        for conn in sessions.values():
            pending = conn.pending if conn is not None else ()
            freed = conn.released if conn is not None else 0  # reads its writes released
            # The session's queue held its committed write, the reads released
            # behind it and what still waits.
            s["requests_in_session_queue"].add(len(pending) + freed + 1)
            if not pending:
                drained += 1
            s["reads_after_write_in_session_queue"].add(freed)
            if conn is not None:
                conn.released = 0
        s["session_queues_drained"].add(drained)
        s["reads_issued_from_session_queue"].add(released)
