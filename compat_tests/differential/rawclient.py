"""A minimal synchronous ZooKeeper client on a blocking socket.

Built on ``zkpy.jute`` records.  One request at a time: ``call`` sends a
request and reads frames until the reply with the same xid arrives; watch
notifications read on the way are appended to ``events`` as
``(type, path)``.  Nothing pings in the background, so callers ping (or make
any request) more often than the negotiated session timeout.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.codec import decode, encode

_LEN = struct.Struct(">i")
_REPLY = struct.Struct(">iqi")


class RawConnectionLoss(Exception):
    """The server closed the connection (or it broke) before replying."""


class RawSessionExpired(Exception):
    """The handshake was answered with session id 0 (expired/invalid session)."""


class RawClient:
    def __init__(self, host: str, port: int, timeout_ms: int = 30000,
                 session: tuple[int, bytes] | None = None, io_timeout: float = 15.0,
                 read_only: bool = False) -> None:
        self.host = host
        self.port = port
        self.requested_timeout = timeout_ms
        self.io_timeout = io_timeout
        self.read_only = read_only  # the handshake's readOnly: may a read-only server take us
        self.server_read_only = False  # the last ConnectResponse's readOnly
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.xid = 0
        self.events: list[tuple[int, str]] = []
        self.session_id = 0
        self.passwd = bytes(16)
        self.timeout = 0
        self.last_zxid = 0
        self.last_io = 0.0
        self._connect(session)

    # -- connection ---------------------------------------------------------

    def _connect(self, session: tuple[int, bytes] | None) -> None:
        sid, passwd = session if session else (0, bytes(16))
        self.sock = socket.create_connection((self.host, self.port), timeout=self.io_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = S.ConnectRequest(0, self.last_zxid, self.requested_timeout, sid, passwd,
                               self.read_only)
        self._send(encode(req))
        frame = self._read_frame()
        resp, _ = decode(S.ConnectResponse, frame, 0)
        self.server_read_only = resp.readOnly
        if resp.sessionId == 0:
            self.close_socket()
            raise RawSessionExpired()
        self.session_id = resp.sessionId
        self.passwd = resp.passwd
        self.timeout = resp.timeOut
        self.last_io = time.monotonic()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                self.buf.clear()

    # -- framing ------------------------------------------------------------

    def _send(self, body: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(_LEN.pack(len(body)) + body)
        except OSError as e:
            self.close_socket()
            raise RawConnectionLoss(str(e)) from None

    def _read_frame(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                (n,) = _LEN.unpack_from(self.buf, 0)
                if len(self.buf) >= 4 + n:
                    frame = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return frame
            if self.sock is None:
                raise RawConnectionLoss("not connected")
            try:
                data = self.sock.recv(1 << 20)
            except OSError as e:
                self.close_socket()
                raise RawConnectionLoss(str(e)) from None
            if not data:
                self.close_socket()
                raise RawConnectionLoss("connection closed by the server")
            self.buf += data

    # -- requests -----------------------------------------------------------

    def call(self, op: int, body: Any = None, xid: int | None = None) -> tuple[int, bytes]:
        """Send one request; return (error code, reply body bytes)."""
        if self.sock is None:
            raise RawConnectionLoss("not connected")
        if xid is None:
            self.xid += 1
            xid = self.xid
        payload = body if isinstance(body, (bytes, bytearray)) else (
            encode(body) if body is not None else b"")
        self._send(struct.pack(">ii", xid, op) + payload)
        while True:
            frame = self._read_frame()
            rxid, zxid, err = _REPLY.unpack_from(frame, 0)
            if rxid == -1:
                ev, _ = decode(S.WatcherEvent, frame, 16)
                self.events.append((ev.type, ev.path))
                continue
            if zxid > 0:
                self.last_zxid = zxid
            if rxid == -2 and xid != -2:
                continue  # a stray ping reply
            self.last_io = time.monotonic()
            if rxid != xid:
                raise AssertionError(f"raw client: reply xid {rxid} for request xid {xid}")
            return err, frame[16:]

    def ping(self) -> None:
        self.call(11, None, xid=-2)

    def keepalive(self) -> None:
        """Ping if the session has been idle for a third of its timeout."""
        if self.sock is not None and time.monotonic() - self.last_io > self.timeout / 3000.0:
            self.ping()

    def close_session(self) -> int:
        err, _ = self.call(-11, None)
        self.close_socket()
        return err
