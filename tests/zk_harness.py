"""A byte-level client for driving zkpy's pure core in tests (no sockets, no reactor)."""

from __future__ import annotations

import struct
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.codec import decode, decode_all
from zkpy.jute.protocol import Op
from zkpy.server.core import CoreSettings, ServerCore
from zkpy.testing.standalone import standalone

T0 = 1_700_000_000_000
OPEN = [S.ACL(31, S.Id("world", "anyone"))]


def make_core(now: int = T0, **kw: Any) -> ServerCore:
    """A started standalone server in memory (``zkpy.testing.standalone``): writes
    commit through the production pipeline, on a disk that syncs at once."""
    return standalone(CoreSettings(**kw), now).core


def frame(*records: Any) -> bytes:
    body = b"".join(r if isinstance(r, bytes) else r.encode() for r in records)
    return struct.pack(">i", len(body)) + body


class Client:
    """One connection to the core; keeps the server's output stream and parses it."""

    def __init__(self, core: ServerCore, now: int = T0, host: str = "127.0.0.1",
                 port: int = 40000) -> None:
        self.core = core
        self.now = now
        self.stream = bytearray()   # everything the server ever sent
        self.unread = bytearray()
        self.closed = False
        self.xid = 0
        self.session_id = 0
        self.passwd = b""
        self.timeout = 0
        self.events: list[Any] = []
        self.conn = core.connect(host, port, self._sink, self._close, now)

    def _sink(self, data: bytes) -> None:
        assert not self.closed, "output after close"
        self.stream += data
        self.unread += data

    def _close(self) -> None:
        self.closed = True

    def send(self, data: bytes, now: int | None = None) -> None:
        if now is not None:
            self.now = now
        self.conn.receive(data, self.now)
        self.core.flush()

    def frames(self) -> list[bytes]:
        out = []
        while len(self.unread) >= 4:
            (n,) = struct.unpack_from(">i", self.unread, 0)
            if len(self.unread) < 4 + n:
                break
            out.append(bytes(self.unread[4:4 + n]))
            del self.unread[:4 + n]
        return out

    def handshake(self, timeout: int = 10000, session_id: int = 0, passwd: bytes = bytes(16),
                  last_zxid: int = 0) -> Any:
        self.send(frame(S.ConnectRequest(0, last_zxid, timeout, session_id, passwd, False)))
        frames = self.frames()
        assert len(frames) == 1, frames
        resp = decode_all(S.ConnectResponse, frames[0])
        self.session_id, self.passwd, self.timeout = resp.sessionId, resp.passwd, resp.timeOut
        return resp

    def submit(self, op: int, record: Any = None, xid: int | None = None) -> int:
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.send(frame(S.RequestHeader(xid, op), record if record is not None else b""))
        return xid

    def replies(self) -> list[tuple[Any, bytes]]:
        """(ReplyHeader, body) of every new non-event frame; events go to self.events."""
        out = []
        for f in self.frames():
            hdr, off = decode(S.ReplyHeader, f)
            if hdr.xid == -1:
                self.events.append(decode_all(S.WatcherEvent, f[off:]))
            else:
                out.append((hdr, f[off:]))
        return out

    def call(self, op: int, record: Any = None, response: Any = None, xid: int | None = None) -> Any:
        """Send one request and return (err, decoded response or raw body)."""
        xid = self.submit(op, record, xid)
        replies = self.replies()
        assert len(replies) == 1, replies
        hdr, body = replies[0]
        assert hdr.xid == xid
        if hdr.err == 0 and response is not None:
            return hdr.err, decode_all(response, body)
        return hdr.err, body

    # shorthands
    def create(self, path: str, data: bytes = b"", acl: Any = OPEN, flags: int = 0) -> int:
        return self.call(Op.create, S.CreateRequest(path, data, acl, flags))[0]

    def get(self, path: str, watch: bool = False) -> Any:
        return self.call(Op.getData, S.GetDataRequest(path, watch), S.GetDataResponse)

    def set(self, path: str, data: bytes, version: int = -1) -> int:
        return self.call(Op.setData, S.SetDataRequest(path, data, version))[0]

    def delete(self, path: str, version: int = -1) -> int:
        return self.call(Op.delete, S.DeleteRequest(path, version))[0]

    def exists(self, path: str, watch: bool = False) -> int:
        return self.call(Op.exists, S.ExistsRequest(path, watch))[0]

    def children(self, path: str, watch: bool = False) -> Any:
        return self.call(Op.getChildren, S.GetChildrenRequest(path, watch), S.GetChildrenResponse)

    def add_auth(self, scheme: str, auth: bytes, xid: int = -4) -> Any:
        self.send(frame(S.RequestHeader(xid, Op.auth), S.AuthPacket(0, scheme, auth)))
        return self.replies()

    def ping(self) -> Any:
        return self.call(Op.ping, xid=-2)


def connected(core: ServerCore, now: int = T0, **kw: Any) -> Client:
    c = Client(core, now, **{k: v for k, v in kw.items() if k in ("host", "port")})
    c.handshake(**{k: v for k, v in kw.items() if k not in ("host", "port")})
    return c
