"""One client connection: framing, the handshake, dispatch, replies in order.

``receive(data, now)`` takes whatever bytes TCP delivered (any split), cuts
them into length-prefixed frames and handles each. Output is queued in
``self.out`` and marked dirty on the core; the adapter writes it on
``ServerCore.flush``. A connection never raises to its caller: bad input is
logged with the reason and the connection is closed, as ZooKeeper does.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zkpy.admin import fourletter
from zkpy.auth.sasl import DigestMD5Server, SaslError
from zkpy.jute import schema as S
from zkpy.jute.codec import JuteError, decode, decode_all
from zkpy.jute.protocol import (
    NOTIFICATION_XID,
    REQUEST_RECORDS,
    WRITE_OPS,
    CreateMode,
    Err,
    KeeperState,
    Op,
    ZkError,
)
from zkpy.server import reads
from zkpy.server.prep import MALFORMED, Request
from zkpy.server.sessions import session_password

if TYPE_CHECKING:
    from zkpy.server.core import ServerCore
    from zkpy.tree.datatree import TxnResult

log = logging.getLogger("zkpy.server")

_LEN = struct.Struct(">i")
_REQ_HDR = struct.Struct(">ii")
_REPLY = struct.Struct(">iiqi")
_CONNECT_FIXED = 4 + 8 + 4 + 8  # protocolVersion, lastZxidSeen, timeOut, sessionId
# Bytes of replies a connection may queue before it stops taking requests from
# its input buffer: a client pipelining reads of big znodes cannot make the
# server queue gigabytes for it.
OUTPUT_BUDGET = 2 * 1024 * 1024
_NULL_BUFFER = _LEN.pack(-1)  # a jute buffer field holding null

# Multi-op request records by op type (MultiOperationRecord).
_MULTI_RECORDS: dict[int, Any] = {
    Op.create: S.CreateRequest, Op.create2: S.CreateRequest,
    Op.createContainer: S.CreateRequest, Op.createTTL: S.CreateTTLRequest,
    Op.delete: S.DeleteRequest, Op.setData: S.SetDataRequest,
    Op.check: S.CheckVersionRequest, Op.getChildren: S.GetChildrenRequest,
    Op.getData: S.GetDataRequest,
}


def hex_sid(sid: int) -> str:
    return f"0x{sid & 0xFFFFFFFFFFFFFFFF:x}"


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
        self.pending: deque[Request | tuple[int, int, Any]] = deque()
        self.early: list[bytes] = []
        self.close_pending = False
        self.out_bytes = 0
        self.backlogged = False
        self.sasl: DigestMD5Server | None = None
        self.established = now
        self.packets_received = 0
        self.packets_sent = 0
        self.last_op = "NA"
        self.last_cxid = -1
        self.last_zxid = -1
        self.last_response = 0
        self.last_latency = 0
        self.min_latency = -1
        self.max_latency = 0
        self.total_latency = 0
        self.latency_count = 0

    # -- bytes in -------------------------------------------------------------

    def receive(self, data: bytes, now: int) -> None:
        core = self.core
        core.now = now
        if self.state in ("closing", "closed"):
            return
        buf = self.buf
        buf += data
        off = 0
        limit = core.settings.max_buffer
        self.backlogged = False
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
            self._frame(frame, now)
            if self.state in ("closing", "closed"):
                break
        del buf[:off]
        core.dirty[self] = None

    def _frame(self, frame: bytes, now: int) -> None:
        self.packets_received += 1
        self.core.stats.packets_received += 1
        if self.state == "new":
            self._handshake(frame, now)
        elif self.state == "connecting":
            self.early.append(frame)
        else:
            self._request(frame, now)

    # -- handshake ------------------------------------------------------------

    def _handshake(self, frame: bytes, now: int) -> None:
        try:
            if len(frame) == _CONNECT_FIXED + 4 + _passwd_len(frame):
                self.old_client = True
                req = S.ConnectRequest(*_decode_old_connect(frame), False)
            else:
                req = decode_all(S.ConnectRequest, frame)
        except JuteError as e:
            self.abort(f"malformed ConnectRequest: {e}")
            return
        core = self.core
        settings = core.settings
        if not core.serving:
            # As a quorum member's ServerCnxn while its ZooKeeperServer is not
            # running (electing, syncing): the client tries another server.
            self.abort("ZooKeeperServer not running")
            return
        read_only = core.read_only
        if read_only is not None and not req.readOnly:
            # ReadOnlyZooKeeperServer: only clients that allow read-only mode (old clients,
            # without the flag, included) are refused.
            log.info("Refusing session request for not-read-only client %s:%d", self.host,
                     self.port)
            self.abort("not a read-only client", quiet=True)
            return
        if req.lastZxidSeen > core.last_zxid:
            self.abort(f"Refusing session request for client as it has seen zxid "
                       f"0x{req.lastZxidSeen:x} our last zxid is 0x{core.last_zxid:x} "
                       f"client must try another server")
            return
        timeout = min(max(req.timeOut, settings.min_session_timeout),
                      settings.max_session_timeout)
        self.timeout = timeout
        if req.sessionId == 0 and read_only is not None:
            self._open_read_only(read_only, timeout, now)
            return
        if req.sessionId == 0 and settings.local_sessions:
            # localSessionsEnabled: the session lives here alone, no proposal.
            sid = core.open_local_session(timeout, now)
            self._open(sid, timeout)
            log.info("Established local session %s with negotiated timeout %dms for client "
                     "%s:%d", hex_sid(sid), timeout, self.host, self.port)
            return
        if req.sessionId == 0:
            sid = core.sessions.new_id()
            self.session_id = sid
            self.state = "connecting"
            self.pending.append(_marker := Request(sid, 0, Op.createSession, timeout, [], self))
            _marker.created = now
            core.submit(_marker, now)
            return
        sid = req.sessionId
        if read_only is not None and read_only.is_global(sid):
            log.info("Refusing global session reconnection in RO mode %s:%d", self.host,
                     self.port)
            self.abort("a global session in read-only mode", quiet=True)
            return
        session = core.sessions.get(sid)
        if (session is None or session.closing or req.passwd != session_password(sid)):
            log.info("Invalid session %s for client %s:%d, probably expired", hex_sid(sid),
                     self.host, self.port)
            self._send_connect_response(0, 0, bytes(16))
            self.close_after_flush()
            return
        if core.revalidate is not None and not session.local:
            # LearnerZooKeeperServer.revalidateSession: the leader decides (and
            # makes us the session's owner); requests wait until it answers.
            self.session_id = sid
            self.state = "connecting"
            core.revalidate(self, sid, timeout)
            return
        self._reopen(session, timeout, now)

    def revalidated(self, valid: bool, now: int) -> None:
        """The leader's answer to the REVALIDATE of our reconnecting session."""
        if self.state != "connecting":
            return
        session = self.core.sessions.get(self.session_id)
        if not valid or session is None or session.closing:
            log.info("Invalid session %s for client %s:%d, probably expired",
                     hex_sid(self.session_id), self.host, self.port)
            self._send_connect_response(0, 0, bytes(16))
            self.close_after_flush()
            return
        self._reopen(session, self.timeout, now)
        early, self.early = self.early, []
        for frame in early:
            self._request(frame, now)
        self.core.dirty[self] = None

    def _reopen(self, session: Any, timeout: int, now: int) -> None:
        sid = session.id
        old = session.conn
        if old is not None and old is not self:
            log.info("Closing previous connection of session %s on reconnect", hex_sid(sid))
            old.abort("session reconnected elsewhere", quiet=True)
        session.timeout = timeout
        self.core.sessions.touch(sid, now)
        self._open(sid, timeout)
        log.info("Client %s:%d reconnected to session %s, timeout %dms", self.host, self.port,
                 hex_sid(sid), timeout)

    def _open_read_only(self, read_only: Any, timeout: int, now: int) -> None:
        sid = read_only.new_session(timeout, now, f"{self.host}:{self.port}")
        if sid is None:
            # ZooKeeper 3.8's answer to the createSession: a bare reply header.
            self._queue(_REPLY.pack(16, 0, self.core.last_zxid, int(Err.NOTREADONLY)))
            self.close_after_flush()
            return
        self._open(sid, timeout)
        log.info("Established local session %s with negotiated timeout %dms for read-only "
                 "client %s:%d", hex_sid(sid), timeout, self.host, self.port)

    def _open(self, sid: int, timeout: int) -> None:
        session = self.core.sessions.get(sid)
        if session is not None:
            session.conn = self
        self.session_id = sid
        self.state = "open"
        self._send_connect_response(timeout, sid, session_password(sid))

    def _send_connect_response(self, timeout: int, sid: int, passwd: bytes) -> None:
        read_only = self.core.read_only is not None
        body = S.ConnectResponse(0, timeout, sid, passwd, read_only).encode()
        if self.old_client:
            body = body[:-1]
        self._queue(_LEN.pack(len(body)) + body)

    # -- requests ---------------------------------------------------------------

    def _request(self, frame: bytes, now: int) -> None:
        core = self.core
        if len(frame) < 8:
            self.abort("request shorter than its header")
            return
        xid, op = _REQ_HDR.unpack_from(frame, 0)
        core.sessions.touch(self.session_id, now)
        if (core.settings.enforce_auth_schemes and op != Op.auth and op != Op.sasl
                and not self._authenticated_for_enforcement(xid)):
            return
        try:
            body = self._decode_body(op, frame)
        except JuteError as e:
            log.warning("Malformed %s request from %s:%d: %s", _op_name(op), self.host,
                        self.port, e)
            if op not in WRITE_OPS:
                self._reply_in_order(xid, Err.MARSHALLINGERROR, b"", now)
                return
            body = MALFORMED  # a write: MARSHALLINGERROR with a zxid, as ZooKeeper
        except KeyError:
            log.warning("Unknown request type %d from %s:%d; closing", op, self.host, self.port)
            self._queue(_REPLY.pack(16, xid, -1, int(Err.UNIMPLEMENTED)))
            self.close_after_flush()
            return
        if core.settings.local_sessions and op in _LOCAL_CHECKED:
            session = core.sessions.get(self.session_id)
            if session is not None and session.local and self._local_session(
                    session, xid, op, body, now):
                return
        # A follower's sync waits for the leader's SYNC, like a write for its commit.
        forward_sync = core.sync if op == Op.sync else None
        if op in WRITE_OPS or forward_sync is not None:
            req = Request(self.session_id, xid, op, body, list(self.ids), self)
            req.created = now
            req.raw = frame
            self.pending.append(req)
            if forward_sync is not None:
                forward_sync(req)
            else:
                core.submit(req, now)
            return
        if op == Op.auth:
            self._auth(xid, body, now)
            return
        if op == Op.sasl:
            self._sasl(xid, body, now)
            return
        if self.pending:
            self.pending.append((xid, op, body))
            return
        self._read(xid, op, body, now)

    def _local_session(self, session: Any, xid: int, op: int, body: Any, now: int) -> bool:
        """A local session's close or first ephemeral; True when answered here."""
        core = self.core
        if op == Op.closeSession:
            self._reply_in_order(xid, 0, b"", now)
            core.close_local_session(session.id, "closed by its client")
            return True
        if not _creates_ephemeral(op, body) or core.read_only is not None:
            return False  # (read-only mode answers it NOTREADONLY, upgrading nothing)
        if core.settings.local_sessions_upgrading:
            core.upgrade_session(session.id, now)  # ahead of this request, in order
            return False
        self._reply_in_order(xid, Err.EPHEMERALONLOCALSESSION, b"", now)
        return True

    def _authenticated_for_enforcement(self, xid: int) -> bool:
        """AuthenticationHelper.enforceAuthentication: False after answering and closing."""
        schemes = self.core.settings.enforce_auth_schemes
        if any(i.scheme in schemes for i in self.ids):
            return True
        # As ZooKeeper: answer this request with SESSIONCLOSEDREQUIRESASLAUTH (zxid 0), read
        # nothing more and close the connection; the session is left to expire.
        log.error("Client authentication scheme(s) %s of session %s from %s:%d does not match "
                  "with any of the expected authentication scheme %s, closing session.",
                  [i.scheme for i in self.ids], hex_sid(self.session_id), self.host, self.port,
                  list(schemes))
        self._queue_in_order(_REPLY.pack(16, xid, 0, int(Err.SESSIONCLOSEDREQUIRESASLAUTH)))
        self.close_after_flush()
        return False

    def _decode_body(self, op: int, frame: bytes) -> Any:
        return decode_body(op, frame)

    def _read(self, xid: int, op: int, body: Any, now: int) -> None:
        core = self.core
        if op == Op.ping:
            self._reply(xid, core.last_zxid, 0, b"", now, "PING")
            return
        try:
            payload = reads.answer(core, self, op, body)
            err = 0
        except ZkError as e:
            payload = e.payload
            err = int(e.code)
        self._reply(xid, core.last_zxid, err, payload, now, _op_name(op))

    def _auth(self, xid: int, body: Any, now: int) -> None:
        try:
            granted = self.core.auth.authenticate(body.scheme, body.auth, self.host)
        except ZkError:
            log.warning("Authentication failed for scheme %s from %s:%d", body.scheme,
                        self.host, self.port)
            self._queue_in_order(_REPLY.pack(16, xid, 0, int(Err.AUTHFAILED)))
            self.close_after_flush()
            return
        for ident in granted:
            if ident not in self.ids:
                self.ids.append(ident)
        self._queue_in_order(_REPLY.pack(16, xid, 0, 0))

    def _sasl(self, xid: int, body: Any, now: int) -> None:
        users = self.core.settings.sasl_users
        if users is None:
            log.warning("SASL authentication from %s:%d refused: no JAAS Server section is "
                        "configured (java.security.auth.login.config)", self.host, self.port)
            self.close_after_flush()
            return
        if self.sasl is None:
            self.sasl = DigestMD5Server(users)
        try:
            token = self.sasl.step(body.token)
        except SaslError as e:
            log.warning("Client %s:%d failed to SASL authenticate: %s", self.host, self.port, e)
            settings = self.core.settings
            required = "sasl" in settings.enforce_auth_schemes
            if settings.allow_sasl_failed_clients and not required:
                log.warning("Maintaining client connection despite SASL authentication failure.")
                self._queue_in_order(_REPLY.pack(20, xid, 0, 0) + _NULL_BUFFER)
                return
            # ZooKeeper 3.8 answers the token (SetSASLResponse with a null token) with
            # SESSIONCLOSEDREQUIRESASLAUTH when SASL is required, else AUTHFAILED, then closes.
            if required:
                log.warning("Closing client connection due to server requires client SASL "
                            "authentication, but client SASL authentication has failed, or "
                            "client is not configured with SASL authentication.")
                err = Err.SESSIONCLOSEDREQUIRESASLAUTH
            else:
                log.warning("Closing client connection due to SASL authentication failure.")
                err = Err.AUTHFAILED
            self._queue_in_order(_REPLY.pack(20, xid, 0, int(err)) + _NULL_BUFFER)
            self.close_after_flush()
            return
        if self.sasl.complete and self.sasl.user is not None:
            ident = S.Id("sasl", self.sasl.user)
            if ident not in self.ids:
                self.ids.append(ident)
                log.info("Session %s authenticated with SASL as %s", hex_sid(self.session_id),
                         self.sasl.user)
        payload = S.SetSASLResponse(token).encode()
        # zxid 0, as ZooKeeperServer.processSasl answers.
        self._queue_in_order(_REPLY.pack(16 + len(payload), xid, 0, 0) + payload)

    # -- commits and ordered replies --------------------------------------------

    def committed(self, req: Request, rc: TxnResult | None) -> None:
        """The core applied ``req``: answer it and whatever was queued behind it."""
        if self.state == "closed":
            return
        if req.type == Op.createSession:
            head = self.pending.popleft() if self.pending else None
            assert head is req
            self._open(req.session_id, req.txn.timeOut)
            log.info("Established session %s with negotiated timeout %dms for client %s:%d",
                     hex_sid(req.session_id), req.txn.timeOut, self.host, self.port)
            early, self.early = self.early, []
            for frame in early:
                self._request(frame, self.core.now)
            self.core.dirty[self] = None
            return
        assert rc is not None
        err, payload = reads.write_reply(req, rc)
        if self.pending and self.pending[0] is req:
            self.pending.popleft()
        self._reply(req.cxid, req.hdr.zxid, err, payload, self.core.now, _op_name(req.type),
                    req.created)
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
        self._reply(req.cxid, self.core.last_zxid, err, b"", self.core.now, _op_name(req.type),
                    req.created)
        self._drain()

    def _drain(self) -> None:
        pending = self.pending
        while pending:
            head = pending[0]
            if isinstance(head, Request):
                return
            pending.popleft()
            if isinstance(head, bytes):
                self._queue(head)
            else:
                xid, op, body = head
                self._read(xid, op, body, self.core.now)

    def _reply_in_order(self, xid: int, err: int, payload: bytes, now: int) -> None:
        self._queue_in_order(_REPLY.pack(16 + len(payload), xid, self.core.last_zxid, err)
                             + payload)

    def _queue_in_order(self, frame: bytes) -> None:
        if self.pending:
            self.pending.append(frame)  # type: ignore[arg-type]
        else:
            self._queue(frame)

    def _reply(self, xid: int, zxid: int, err: int, payload: bytes, now: int, op: str,
               started: int | None = None) -> None:
        self.out.append(_REPLY.pack(16 + len(payload), xid, zxid, err))
        if payload:
            self.out.append(payload)
        self.out_bytes += 20 + len(payload)
        self.packets_sent += 1
        self.core.stats.packets_sent += 1
        latency = now - started if started is not None else 0
        self.core.stats.latency.add(latency)
        self.last_op = op
        if xid >= 0:  # pings, auth and watch re-registration do not count, as in ZooKeeper
            self.last_cxid = xid
        self.last_zxid = zxid
        self.last_response = now
        self.last_latency = latency
        if self.min_latency < 0 or latency < self.min_latency:
            self.min_latency = latency
        if latency > self.max_latency:
            self.max_latency = latency
        self.total_latency += latency
        self.latency_count += 1
        self.core.dirty[self] = None

    def send_event(self, etype: int, path: str) -> None:
        body = S.WatcherEvent(etype, KeeperState.SyncConnected, path).encode()
        self._queue(_REPLY.pack(16 + len(body), NOTIFICATION_XID, -1, 0) + body)
        self.core.stats.watch_events += 1

    # -- output and closing -------------------------------------------------------

    def _queue(self, frame: bytes) -> None:
        self.out.append(frame)
        self.out_bytes += len(frame)
        self.packets_sent += 1
        self.core.stats.packets_sent += 1
        self.core.dirty[self] = None

    def flush(self) -> None:
        if self.out and self.state != "closed":
            data = b"".join(self.out)
            self.out.clear()
            self.out_bytes = 0
            self.sink(data)
        if self.close_pending and self.state != "closed":
            self._close()

    def close_after_flush(self) -> None:
        self.close_pending = True
        if self.state != "closed":
            self.state = "closing"
        self.core.dirty[self] = None

    def abort(self, reason: str, quiet: bool = False) -> None:
        """Close this connection at once (after writing what is already queued)."""
        if not quiet:
            log.warning("Closing connection from %s:%d: %s", self.host, self.port, reason)
        self.close_after_flush()

    def _close(self) -> None:
        self.state = "closed"
        self.core.connection_lost(self)
        self.closer()

    def _four_letter(self, cmd: str) -> None:
        self.state = "closing"
        text = fourletter.run(self.core, cmd, self)  # it does its own packet counting
        self.out.append(text.encode("utf-8"))
        self.close_after_flush()


_OP_NAMES = {int(o): o.name for o in Op}
_LOCAL_CHECKED = frozenset({Op.closeSession, Op.create, Op.create2, Op.multi})


def _creates_ephemeral(op: int, body: Any) -> bool:
    if op == Op.multi:
        return isinstance(body, list) and any(
            t in (Op.create, Op.create2) and rec.flags in CreateMode.EPHEMERAL_FLAGS
            for t, rec in body)
    return body is not MALFORMED and body.flags in CreateMode.EPHEMERAL_FLAGS


def _op_name(op: int) -> str:
    return _OP_NAMES.get(op) or str(op)


def decode_body(op: int, frame: bytes) -> Any:
    """The request record of a client frame (xid, op, body); JuteError when
    malformed, KeyError for an unknown op."""
    if op in (Op.ping, Op.closeSession, Op.whoAmI):
        return None
    if op == Op.multi or op == Op.multiRead:
        return _decode_multi(frame)
    cls = REQUEST_RECORDS[op]
    return decode(cls, frame, 8)[0]


def _passwd_len(frame: bytes) -> int:
    if len(frame) < _CONNECT_FIXED + 4:
        return -1_000_000
    (n,) = _LEN.unpack_from(frame, _CONNECT_FIXED)
    return max(n, 0)


def _decode_old_connect(frame: bytes) -> tuple[Any, ...]:
    """A pre-3.4 ConnectRequest: the same fields without the readOnly flag."""
    pv, last, to, sid = struct.unpack_from(">iqiq", frame, 0)
    (n,) = _LEN.unpack_from(frame, _CONNECT_FIXED)
    passwd = frame[_CONNECT_FIXED + 4:_CONNECT_FIXED + 4 + max(n, 0)]
    return pv, last, to, sid, passwd


def _decode_multi(frame: bytes) -> list[tuple[int, Any]]:
    ops: list[tuple[int, Any]] = []
    off = 8
    end = len(frame)
    while True:
        hdr, off = decode(S.MultiHeader, frame, off, end)
        if hdr.done:
            return ops
        cls = _MULTI_RECORDS.get(hdr.type)
        if cls is None:
            raise JuteError(f"invalid type of op {hdr.type} in a multi")
        rec, off = decode(cls, frame, off, end)
        ops.append((hdr.type, rec))
