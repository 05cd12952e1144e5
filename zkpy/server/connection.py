"""One client connection: framing, the session's state, replies in order.

``receive(data, now)`` takes whatever bytes TCP delivered (any split), cuts
them into length-prefixed frames and hands each on: the first to admission
(``zkpy.server.admission``: the ConnectRequest), a four-letter word to
``zkpy.admin.fourletter``, every later one to ``zkpy.server.routing``, which
decides where the request goes. What stays here is the order: a request's
reply never overtakes an earlier request's of the same session (reads and
auth answers wait in ``pending`` behind writes still waiting for their
commit), and watch events are queued as they fire.

Output is queued in ``self.out`` and marked dirty on the core; the adapter
writes it on ``ServerCore.flush``. A connection never raises to its caller:
bad input is logged with the reason and the connection is closed, as
ZooKeeper does. After ``OUTPUT_BUDGET`` bytes of unsent replies it stops
taking requests from its input buffer (``backlogged``) until the transport
has taken them.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from zkpy.admin import fourletter
from zkpy.jute import schema as S
from zkpy.jute.opcodes import (
    OP_createSession,
    OP_ping,
)
from zkpy.jute.protocol import NOTIFICATION_XID, KeeperState, Op, ZkError
from zkpy.jute.requests import REPLY_FRAME
from zkpy.server import admission, reads, routing
from zkpy.server.linear_reads import LINEAR_OPS, LinearRead
from zkpy.server.metrics import NS_PER_MS, Summary
from zkpy.server.prep import Request
from zkpy.server.replies import write_reply
from zkpy.server.sessions import hex_sid, session_password

if TYPE_CHECKING:
    from zkpy.auth.sasl import DigestMD5Server
    from zkpy.server.core import ServerCore
    from zkpy.tree.datatree import TxnResult

log = logging.getLogger("zkpy.server")

_LEN: Final = struct.Struct(">i")
# Bytes of replies a connection may queue before it stops taking requests from
# its input buffer: a client pipelining reads of big znodes cannot make the
# server queue gigabytes for it.
OUTPUT_BUDGET: Final = 2 * 1024 * 1024


class Connection:
    def __init__(self, core: ServerCore, conn_id: int, host: str, port: int,
                 sink: Callable[[bytes], None], closer: Callable[[], None], now: int) -> None:
        self.core = core
        self.id = conn_id
        self.host = host
        self.port = port
        self.sink = sink
        self.closer = closer
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.session_id = 0
        self.timeout = 0
        self.ids: list[Any] = [S.Id("ip", host)]
        self.state = "new"  # new -> connecting -> open -> closing -> closed
        self.old_client = False
        # Requests waiting behind a write of this session: writes, reads (xid, op,
        # body, arrival ms), linearizable reads and queued reply frames (bytes).
        self.pending: deque[Request | tuple[int, int, Any, int] | LinearRead | bytes] = deque()
        # linearizableReads: reads in ``pending`` waiting for their read point, and
        # the frames kept from routing until they are answered (zkpy.server.linear_reads),
        # with the time each arrived.
        self.unanswered = 0
        self.deferred: list[tuple[bytes, int]] = []
        self.early: list[tuple[bytes, int]] = []  # (frame, arrival ms) before the session
        self.close_pending = False
        self.released = 0  # reads released behind this session's writes (commit stage)
        self.out_bytes = 0
        self.backlogged = False
        self.sasl: DigestMD5Server | None = None  # a SASL exchange in progress
        self.established = now
        self.packets_received = 0
        self.packets_sent = 0
        self.last_op = "NA"
        self.last_cxid = -1
        self.last_zxid = -1
        self.last_response = 0
        self.last_latency = 0
        # This connection's latencies (cons: min/avg/max). A reply's latency is noted
        # once, here, by kind; ``fold_latencies`` hands them to the server's
        # readlatency/updatelatency too (when read, on a tick, when the connection goes).
        self.latency = Summary("connection_latency", window=0)
        self._reads: list[int] = []
        self._updates: list[int] = []
        self.metrics = core.metrics
        # The hot path's observations, bound once.
        self.read_latency = self._reads.append
        self.update_latency = self._updates.append
        self.queued_time = core.metrics.request_throttle_queue_time_ms.add
        self.clock = core.host.monotonic_ns  # the core's stages are timed on the host's clock
        self.routed_at: int | None = None  # when the request being routed began (host clock)
        # An ensemble member's reads pass its commit stage to the final one, which
        # ZooKeeper times (read_final_proc_time_ms); a standalone server's do not.
        self.timed_reads = core.metrics.mirror_reads
        self.read_final_time = core.metrics.summary["read_final_proc_time_ms"].add
        self.response_size = core.stats.response_size.add

    # -- bytes in -------------------------------------------------------------

    def receive(self, data: bytes, now: int) -> None:
        core = self.core
        core.at(now)
        if self.state in ("closing", "closed"):
            return
        buf = self.buf
        buf += data
        off = 0
        limit = core.settings.max_buffer
        self.backlogged = False
        read_at: int | None = None  # when the bytes were taken (host clock), if read
        while len(buf) - off >= 4:
            if self.out_bytes > OUTPUT_BUDGET:
                # Enough replies for this client until its transport takes them:
                # the rest waits in our buffer (the adapter calls receive(b"") again).
                self.backlogged = True
                break
            (n,) = _LEN.unpack_from(buf, off)
            if self.state == "new" and off == 0 and fourletter.is_command(bytes(buf[0:4])):
                self._four_letter(bytes(buf[0:4]).decode("ascii"))
                return
            if n < 0 or n > limit:
                self.abort(f"Len error {n}" + (" (exceeds jute.maxbuffer)" if n > limit else ""))
                return
            if len(buf) - off - 4 < n:
                break
            frame = bytes(buf[off + 4:off + 4 + n])
            off += 4 + n
            # RequestThrottler's queue time: how long a request waited behind the
            # ones read before it in the same read. The first has none ahead of it
            # (0, what reading the clock as the bytes are taken would give); the
            # clock is read only when more bytes follow it.
            if off == 4 + n:
                started = read_at = self.clock() if off < len(buf) else None
                waited = 0
            else:
                started = self.clock()
                waited = started - read_at if read_at is not None else 0
            self._frame(frame, now, waited, started)
            if self.state in ("closing", "closed"):
                break
        del buf[:off]
        self.metrics.bytes_received_count += off
        core.mark_dirty(self)

    def _frame(self, frame: bytes, now: int, waited_ns: int, started: int | None) -> None:
        self.packets_received += 1
        self.core.stats.packets_received += 1
        if self.state == "new":
            admission.handshake(self.core, self, frame, now)
        elif self.state == "connecting":
            self.early.append((frame, now))
        elif started is None:  # alone in its read: nothing ahead of it (counted in bulk)
            self.metrics.unqueued_requests += 1
            routing.route(self.core, self, frame, now)
        else:
            self.queued_time(waited_ns // NS_PER_MS)
            self.routed_at = started  # (a write's prep is timed from here)
            routing.route(self.core, self, frame, now)
            self.routed_at = None

    # -- the session ------------------------------------------------------------

    def open(self, sid: int, timeout: int) -> None:
        """The session is this connection's: answer the ConnectRequest."""
        session = self.core.sessions.get(sid)
        if session is not None:
            session.conn = self
        self.session_id = sid
        self.state = "open"
        self.send_connect_response(timeout, sid, session_password(sid))

    def await_revalidation(self, sid: int) -> None:
        """A reconnecting session waits for the leader's word (REVALIDATE);
        requests that arrive meanwhile wait in ``early``."""
        self.session_id = sid
        self.state = "connecting"

    def revalidated(self, valid: bool, now: int) -> None:
        """The leader's answer to the REVALIDATE of our reconnecting session."""
        if self.state == "connecting":
            admission.revalidated(self.core, self, valid, now)

    def replay_early(self, now: int) -> None:
        """The session is open: the requests that came while it was not, in order."""
        early, self.early = self.early, []
        for frame, arrived in early:
            self.queued_time(now - arrived)  # it waited for its session
            self.routed_at = self.clock()
            routing.route(self.core, self, frame, arrived)
            self.routed_at = None
        self.core.mark_dirty(self)

    def await_session(self, create: Request) -> None:
        """A new global session waits for its createSession to commit; requests
        that arrive meanwhile wait in ``early``."""
        self.session_id = create.session_id
        self.state = "connecting"
        self.pending.append(create)

    def send_connect_response(self, timeout: int, sid: int, passwd: bytes) -> None:
        body = S.ConnectResponse(0, timeout, sid, passwd, self.core.read_only).encode()
        if self.old_client:
            body = body[:-1]
        self.queue(_LEN.pack(len(body)) + body)

    # -- requests ---------------------------------------------------------------

    def read(self, xid: int, op: int, body: Any, now: int) -> None:
        """Answer a read now, or behind this connection's pending requests (with
        linearizable reads, once its read point is reached)."""
        gate = self.core.read_gate
        if gate is not None and gate.active and op in LINEAR_OPS:
            gate.hold(self, xid, op, body, now)
        elif self.pending:
            self.pending.append((xid, op, body, now))
            self.metrics.reads_waiting += 1
        else:
            self._read(xid, op, body, now, now)

    def _read(self, xid: int, op: int, body: Any, now: int, arrived: int) -> None:
        core = self.core
        # An ensemble member's reads pass its final stage timed (see __init__).
        started = self.clock() if self.timed_reads else None
        if op == OP_ping:
            payload, err, name = b"", 0, "PING"
        else:
            try:
                payload = reads.answer(core, self, op, body)
                err = 0
            except ZkError as e:
                payload = e.payload
                err = int(e.code)
            name = routing.op_name(op)
        self._reply(xid, core.last_zxid, err, payload, now, name, arrived)
        if started is not None:
            self.read_final_time((self.clock() - started) // NS_PER_MS)
            self.metrics.reads_answered += 1

    # -- commits and ordered replies --------------------------------------------

    def committed(self, req: Request, rc: TxnResult | None) -> None:
        """The core applied ``req``: answer it and whatever was queued behind it."""
        if self.state == "closed":
            return
        if req.type == OP_createSession:
            head = self.pending.popleft() if self.pending else None
            assert head is req
            self.open(req.session_id, req.txn.timeOut)
            self.update_latency(max(self.core.now - req.created, 0))
            log.info("Established session %s with negotiated timeout %dms for client %s:%d",
                     hex_sid(req.session_id), req.txn.timeOut, self.host, self.port)
            self.replay_early(self.core.now)
            return
        assert rc is not None
        err, payload = write_reply(req, rc)
        if self.pending and self.pending[0] is req:
            self.pending.popleft()
        hdr: S.TxnHeader = req.hdr
        self._reply(req.cxid, hdr.zxid, err, payload, self.core.now, routing.op_name(req.type),
                    req.created, self.update_latency)
        self._drain()

    def synced(self, req: Request) -> None:
        """The leader's SYNC for ``req`` arrived: everything before it is applied."""
        if self.state == "closed":
            return
        if self.pending and self.pending[0] is req:
            self.pending.popleft()
        now = self.core.now
        self._reply(req.cxid, self.core.last_zxid, 0, reads.answer(self.core, self, Op.sync,
                                                                      req.body),
                    now, "sync", req.created)
        self._drain()

    def answer_now(self, req: Request, err: int) -> None:
        """Answer a write or sync that was never proposed (read-only mode) with ``err``
        and the last zxid, and whatever was queued behind it."""
        if self.state == "closed":
            return
        if self.pending and self.pending[0] is req:
            self.pending.popleft()
        self._reply(req.cxid, self.core.last_zxid, err, b"", self.core.now, routing.op_name(req.type),
                    req.created)
        self._drain()

    def _drain(self) -> None:
        pending = self.pending
        while pending:
            head = pending[0]
            if isinstance(head, Request):
                return
            if isinstance(head, LinearRead):
                if not head.ready:
                    return
                pending.popleft()
                self.unanswered -= 1
                self._read(head.xid, head.op, head.body, self.core.now, head.arrived)
                continue
            pending.popleft()
            if isinstance(head, bytes):
                self.queue(head)
            else:
                xid, op, body, arrived = head
                self.metrics.released_reads += 1
                self.metrics.reads_waiting -= 1
                self.released += 1
                self._read(xid, op, body, self.core.now, arrived)
        if self.deferred and not self.unanswered:
            self._replay()

    def read_point_reached(self, read: LinearRead) -> None:
        """``read``'s read point is applied: answer it if nothing is ahead of it."""
        if self.state != "closed" and self.pending and self.pending[0] is read:
            self._drain()

    def _replay(self) -> None:
        """Route the frames kept while reads waited (``routing`` keeps the rest
        again if a read of theirs waits in turn)."""
        frames, self.deferred = self.deferred, []
        for frame, arrived in frames:
            if self.state in ("closing", "closed"):
                return
            routing.route(self.core, self, frame, arrived)

    def reply_in_order(self, xid: int, err: int, payload: bytes, now: int) -> None:
        """A reply the final processor does not send (auth, refusals): in order."""
        self.core.stats.response_size.add(16 + len(payload))
        self.core.stats.other_response_bytes += 16 + len(payload)
        self.queue_in_order(REPLY_FRAME.pack(16 + len(payload), xid, self.core.last_zxid, err)
                             + payload)

    def queue_in_order(self, frame: bytes) -> None:
        if self.pending:
            self.pending.append(frame)
        else:
            self.queue(frame)

    def _reply(self, xid: int, zxid: int, err: int, payload: bytes, now: int, op: str,
               started: int | None = None,
               observe: Callable[[int], None] | None = None) -> None:
        """Send a reply; ``observe`` takes its latency (readlatency unless said)."""
        size = 16 + len(payload)
        self.out.append(REPLY_FRAME.pack(size, xid, zxid, err))
        if payload:
            self.out.append(payload)
        self.out_bytes += size + 4
        self.packets_sent += 1
        self.core.stats.packets_sent += 1
        self.response_size(size)
        latency = now - started if started is not None and now > started else 0
        (observe or self.read_latency)(latency)
        self.last_op = op
        if xid >= 0:  # pings, auth and watch re-registration do not count, as in ZooKeeper
            self.last_cxid = xid
        self.last_zxid = zxid
        self.last_response = now
        self.last_latency = latency
        self.core.mark_dirty(self)

    def fold_latencies(self) -> None:
        """Hand the latencies noted since the last fold to this connection's figures
        and to the server's readlatency and updatelatency."""
        metrics = self.metrics
        for values, summary in ((self._reads, metrics.readlatency),
                                (self._updates, metrics.updatelatency)):
            if values:
                lo, hi, total = self.latency.take(values)
                summary.take_known(values, lo, hi, total)
                if summary is metrics.readlatency and metrics.mirror_reads:
                    # A member's reads pass its commit stage: from arriving to being
                    # answered they wait there only (behind their session's writes),
                    # so the same measured interval is their commit-stage time.
                    metrics.summary["read_commitproc_time_ms"].take_known(values, lo, hi, total)
                values.clear()

    # ServerCnxn's latency figures for cons and the AdminServer's connections.
    @property
    def min_latency(self) -> int:
        """-1 before the first reply, as ServerCnxn."""
        self.fold_latencies()
        return self.latency.min if self.latency.count else -1

    @property
    def max_latency(self) -> int:
        self.fold_latencies()
        return self.latency.max

    @property
    def total_latency(self) -> int:
        self.fold_latencies()
        return self.latency.total

    @property
    def latency_count(self) -> int:
        self.fold_latencies()
        return self.latency.count

    def send_event(self, etype: int, path: str) -> None:
        body = S.WatcherEvent(etype, KeeperState.SyncConnected, path).encode()
        self.queue(REPLY_FRAME.pack(16 + len(body), NOTIFICATION_XID, -1, 0) + body)
        stats = self.core.stats
        stats.watch_events += 1
        stats.response_size.add(16 + len(body))
        stats.other_response_bytes += 16 + len(body)
        self.metrics.watch_bytes += 16 + len(body)

    # -- output and closing -------------------------------------------------------

    def queue(self, frame: bytes) -> None:
        self.out.append(frame)
        self.out_bytes += len(frame)
        self.packets_sent += 1
        self.core.stats.packets_sent += 1
        self.core.mark_dirty(self)

    def flush(self) -> None:
        if self.out and self.state != "closed":
            data = b"".join(self.out)
            self.out.clear()
            self.out_bytes = 0
            self.sink(data)
        if self._reads or self._updates:  # replies' latencies, for the next fold
            self.core.unfolded[self] = None
        if self.close_pending and self.state != "closed":
            self._close()

    def close_after_flush(self) -> None:
        self.close_pending = True
        if self.state != "closed":
            self.state = "closing"
        self.core.mark_dirty(self)

    def abort(self, reason: str, quiet: bool = False) -> None:
        """Close this connection at once (after writing what is already queued)."""
        if not quiet:
            log.warning("Closing connection from %s:%d: %s", self.host, self.port, reason)
        self.close_after_flush()

    def _close(self) -> None:
        self.state = "closed"
        self.core.connection_lost(self)
        self.closer()

    def lost(self) -> None:
        """The transport is gone: nothing more is read or written here, and the
        replies still on their way (writes being committed) are dropped."""
        if self.state != "closed":  # not closed by us: the client went away
            self.metrics.connection_drop_count += 1  # NIOServerCnxn.handleFailedRead
            log.info("Client %s:%d closed the connection%s", self.host, self.port,
                     f" with {len(self.buf)} bytes of an incomplete frame unread"
                     if self.buf else "")
            self.state = "closed"
            self.out.clear()
        # The reads still waiting behind a write are never answered now.
        self.metrics.reads_waiting -= sum(1 for p in self.pending if isinstance(p, tuple))
        self.pending.clear()
        self.core.connection_lost(self)

    def _four_letter(self, cmd: str) -> None:
        self.state = "closing"
        text = fourletter.run(self.core, cmd, self)  # it does its own packet counting
        self.out.append(text.encode("utf-8"))
        self.close_after_flush()
