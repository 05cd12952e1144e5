"""The ZooKeeper wire protocol as the load generator speaks it.

Contract: requests are jute frames built once with zkpy's codec and replayed
with fresh xids; replies are parsed only as far as the ReplyHeader (xid,
zxid, err) and the frame length, and every reply is checked: its xid must be
the next one the session is owed (ZooKeeper answers a session's requests in
order; a gap or a stranger is a :class:`ProtocolError`), an error code is
counted by code, and a success whose length differs from what the request
must return (a getData's data and Stat, a setData's Stat, a create's path)
is counted as a bad reply.  Watch notifications (xid -1) and ping replies
(xid -2) are counted apart.  Blocking sockets with timeouts; no Twisted.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import Counter
from collections.abc import Iterable, Sequence

from zkpy.jute import schema as S
from zkpy.jute.codec import decode, encode
from zkpy.jute.protocol import Op

HDR = struct.Struct(">iii")        # frame length, xid, type
LEN = struct.Struct(">i")
REPLY = struct.Struct(">iqi")      # xid, zxid, err (after the length)
OPEN_ACL = [S.ACL(31, S.Id("world", "anyone"))]
STAT_BYTES = 68
REPLY_HEADER_BYTES = 16

OP_CREATE, OP_DELETE, OP_GET, OP_SET = int(Op.create), int(Op.delete), int(Op.getData), int(Op.setData)
OP_SYNC, OP_PING, OP_CLOSE = int(Op.sync), int(Op.ping), int(Op.closeSession)
XID_NOTIFICATION, XID_PING = -1, -2
ERR_NODEEXISTS = -110

# One request: (opcode, encoded body, reply length on success or None: unchecked).
Request = tuple[int, bytes, "int | None"]


class ProtocolError(RuntimeError):
    """The server broke the protocol (or refused the session)."""


def get(path: str, value_len: int | None, watch: bool = False) -> Request:
    """getData; *value_len*: the data length the reply must carry."""
    exp = None if value_len is None else REPLY_HEADER_BYTES + 4 + value_len + STAT_BYTES
    return OP_GET, encode(S.GetDataRequest(path, watch)), exp


def set_(path: str, data: bytes) -> Request:
    return OP_SET, encode(S.SetDataRequest(path, data, -1)), REPLY_HEADER_BYTES + STAT_BYTES


def create(path: str, data: bytes) -> Request:
    exp = REPLY_HEADER_BYTES + 4 + len(path.encode())
    return OP_CREATE, encode(S.CreateRequest(path, data, OPEN_ACL, 0)), exp


def delete(path: str) -> Request:
    return OP_DELETE, encode(S.DeleteRequest(path, -1)), REPLY_HEADER_BYTES


def sync(path: str) -> Request:
    p = path.encode()
    return OP_SYNC, struct.pack(">i", len(p)) + p, REPLY_HEADER_BYTES + 4 + len(p)


def value(size: int) -> bytes:
    """A fixed, non-trivial value of *size* bytes."""
    return bytes((i * 31 + 7) & 0xFF for i in range(size))


class Conn:
    """One session.  ``call`` for one request at a time; the pipelined fields
    (``plan``, ``pos``, ``rpos``...) are driven by :mod:`bench.loadgen`."""

    def __init__(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        self.sock, self.addr = sock, addr
        self.buf = bytearray()
        self.session_id = 0
        self.timeout_ms = 0
        self.xid = 0           # last xid issued
        self.rxid = 0          # last xid answered
        self.events = 0        # watch notifications received
        self.pings = 0         # ping replies received
        self.pings_sent = 0
        self.plan: Sequence[Request] = ()
        self.pos = 0           # next plan entry to issue
        self.rpos = 0          # plan entry the next reply answers
        self.cyclic = True

    @classmethod
    def open(cls, addr: tuple[str, int], timeout: float = 30.0,
             session_timeout_ms: int = 30000) -> Conn:
        return open_sessions([addr], timeout, session_timeout_ms)[0]

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def outstanding(self) -> int:
        return self.xid - self.rxid

    def recv_into_buf(self) -> None:
        data = self.sock.recv(1 << 18)
        if not data:
            raise ConnectionError("server %s:%d closed the session's connection (%d requests "
                                  "outstanding)" % (*self.addr, self.outstanding))
        self.buf += data

    def read_frame(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                (n,) = LEN.unpack_from(self.buf, 0)
                if len(self.buf) >= 4 + n:
                    frame = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return frame
            self.recv_into_buf()

    def frame(self, op: int, body: bytes) -> bytes:
        self.xid += 1
        return HDR.pack(len(body) + 8, self.xid, op) + body

    def call(self, req: Request) -> int:
        """Send one request, wait for its reply, return its error code."""
        op, body, exp = req
        self.sock.sendall(self.frame(op, body))
        while True:
            frame = self.read_frame()
            xid, _zxid, err = REPLY.unpack_from(frame, 0)
            if xid == XID_NOTIFICATION:
                self.events += 1
                continue
            if xid == XID_PING:
                self.pings += 1
                continue
            if xid != self.xid:
                raise ProtocolError("reply for xid %d while waiting for %d" % (xid, self.xid))
            self.rxid = xid
            if err == 0 and exp is not None and len(frame) != exp:
                raise ProtocolError("reply of %d bytes to op %d, expected %d"
                                    % (len(frame), op, exp))
            return err

    def ping(self) -> None:
        """Ping and wait for every ping answer owed (keeps an idle session alive)."""
        self.send_ping()
        while self.pings < self.pings_sent:
            frame = self.read_frame()
            xid = REPLY.unpack_from(frame, 0)[0]
            if xid == XID_PING:
                self.pings += 1
            elif xid == XID_NOTIFICATION:
                self.events += 1
            else:
                raise ProtocolError("reply for xid %d to a ping" % xid)

    def send_ping(self) -> None:
        self.sock.sendall(HDR.pack(8, XID_PING, OP_PING))
        self.pings_sent += 1

    def close(self) -> None:
        """closeSession (best effort), then close the socket."""
        try:
            self.sock.settimeout(5)
            self.call((OP_CLOSE, b"", None))
        except (OSError, ProtocolError, ConnectionError):
            pass
        self.abort()

    def abort(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def open_sessions(addrs: Sequence[tuple[str, int]], timeout: float = 30.0,
                  session_timeout_ms: int = 30000, batch: int = 100) -> list[Conn]:
    """One new session per address in *addrs* (repeat an address for several),
    handshakes pipelined *batch* at a time; raises on any refusal.  While it
    takes long (a server slow to accept), the sessions already open are
    pinged every third of their timeout so that none expires meanwhile."""
    conns: list[Conn] = []
    req = encode(S.ConnectRequest(0, 0, session_timeout_ms, 0, b"\0" * 16, False))
    hello = LEN.pack(len(req)) + req
    touched = time.monotonic()
    try:
        for start in range(0, len(addrs), batch):
            if time.monotonic() - touched > session_timeout_ms / 3000.0:
                for c in conns:
                    c.send_ping()
                touched = time.monotonic()
            chunk: list[Conn] = []
            for addr in addrs[start:start + batch]:
                sock = socket.create_connection(addr, timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c = Conn(sock, addr)
                chunk.append(c)
                conns.append(c)
                sock.sendall(hello)
            for c in chunk:
                _finish_handshake(c, c.read_frame())
    except BaseException:
        for c in conns:
            c.abort()
        raise
    return conns


def _finish_handshake(c: Conn, frame: bytes) -> None:
    try:
        resp, _ = decode(S.ConnectResponse, frame)
        c.session_id, c.timeout_ms = resp.sessionId, resp.timeOut
    except Exception:  # a server that omits the trailing readOnly byte
        (c.timeout_ms,) = struct.unpack_from(">i", frame, 4)
        (c.session_id,) = struct.unpack_from(">q", frame, 8)
    if c.timeout_ms <= 0:
        raise ProtocolError("session refused by %s:%d (negotiated timeout %d)"
                            % (*c.addr, c.timeout_ms))


def consume_replies(c: Conn, errors: Counter) -> tuple[int, int]:
    """Take every complete frame out of ``c.buf``; check each reply against
    the plan entry it answers (see the module docstring).  Error codes go into
    *errors*; returns (replies, bad replies)."""
    buf = c.buf
    off, n, bad, end = 0, 0, 0, len(buf)
    plan, rpos, rxid, size = c.plan, c.rpos, c.rxid, len(c.plan)
    unpack_len, unpack_reply = LEN.unpack_from, REPLY.unpack_from
    while end - off >= 4:
        (flen,) = unpack_len(buf, off)
        if end - off - 4 < flen:
            break
        xid, _zxid, err = unpack_reply(buf, off + 4)
        off += 4 + flen
        if xid < 0:
            if xid == XID_NOTIFICATION:
                c.events += 1
            elif xid == XID_PING:
                c.pings += 1
            continue
        rxid += 1
        if xid != rxid:
            raise ProtocolError("session 0x%x: reply for xid %d, expected %d"
                                % (c.session_id, xid, rxid))
        if err:
            errors[err] += 1
        elif plan[rpos][2] is not None and flen != plan[rpos][2]:
            bad += 1
        rpos += 1
        if rpos == size:
            rpos = 0
        n += 1
    if off:
        del buf[:off]
    c.rpos, c.rxid = rpos, rxid
    return n, bad


def issue(c: Conn, k: int) -> int:
    """Send up to *k* next requests of ``c.plan`` in one write (a cyclic plan
    wraps; a finite one stops at its end); returns how many were sent."""
    plan, pos, size, cyclic = c.plan, c.pos, len(c.plan), c.cyclic
    if not cyclic:
        k = min(k, size - pos)
    if k <= 0:
        return 0
    parts: list[bytes] = []
    xid, pack = c.xid, HDR.pack
    for _ in range(k):
        op, body, _exp = plan[pos]
        pos += 1
        if pos == size and cyclic:
            pos = 0
        xid += 1
        parts.append(pack(len(body) + 8, xid, op))
        parts.append(body)
    c.pos = pos
    c.xid = xid
    c.sock.sendall(b"".join(parts))
    return k


def pipeline(conn: Conn, reqs: Sequence[Request], window: int = 256,
             ok: Iterable[int] = (0,)) -> Counter:
    """Send *reqs* on one session keeping *window* in flight; returns a
    Counter of the error codes not in *ok* (bad replies under key "bad")."""
    if conn.outstanding:
        raise ProtocolError("pipeline on a session with replies outstanding")
    conn.plan, conn.cyclic, conn.pos, conn.rpos = reqs, False, 0, 0
    errors: Counter = Counter()
    bad = 0
    issue(conn, window)
    while conn.outstanding:
        conn.recv_into_buf()
        n, b = consume_replies(conn, errors)
        bad += b
        if n:
            issue(conn, n)
    allowed = set(ok)
    out = Counter({k: v for k, v in errors.items() if k not in allowed})
    if bad:
        out["bad"] = bad
    return out
