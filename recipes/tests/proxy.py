"""A loopback TCP proxy that understands ZooKeeper's framing just enough to
drop the connection after forwarding a chosen request but before
forwarding its reply ("the create reached the server, the client never
heard back")."""

from __future__ import annotations

import socket
import struct
import threading

# request opcodes that create a znode: create, create2, createContainer, createTTL
CREATE_OPS = frozenset({1, 15, 19, 21})


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">i", head)
    if length < 0 or length > 64 * 1024 * 1024:
        return None
    body = _read_exact(sock, length)
    if body is None:
        return None
    return head + body


class _Conn:
    def __init__(self, proxy: FaultProxy, client: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = socket.create_connection(proxy.target)
        self.doomed: set[int] = set()
        self.closed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._up, daemon=True).start()
        threading.Thread(target=self._down, daemon=True).start()

    def close(self):
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.proxy._forget(self)

    def _up(self):
        first = True
        while True:
            frame = _read_frame(self.client)
            if frame is None:
                break
            if not first and len(frame) >= 12:
                xid, op = struct.unpack(">ii", frame[4:12])
                path = None
                if len(frame) >= 16:
                    (plen,) = struct.unpack(">i", frame[12:16])
                    if 0 <= plen <= len(frame) - 16:
                        path = frame[16:16 + plen].decode("utf-8", "replace")
                if self.proxy._should_doom(op, path):
                    self.doomed.add(xid)
            first = False
            try:
                self.server.sendall(frame)
            except OSError:
                break
        self.close()

    def _down(self):
        first = True
        while True:
            frame = _read_frame(self.server)
            if frame is None:
                break
            if not first and len(frame) >= 8:
                (xid,) = struct.unpack(">i", frame[4:8])
                if xid in self.doomed:
                    self.proxy.triggered.set()
                    break  # drop the reply and the connection
            first = False
            try:
                self.client.sendall(frame)
            except OSError:
                break
        self.close()


class FaultProxy:
    """Listen on 127.0.0.1:<free port>, forward to *target*.

    ``arm(path_contains=..., opcodes=CREATE_OPS)``: the next matching
    request is forwarded, but when its reply comes back the reply is
    dropped and the connection cut.  ``triggered`` is set when that
    happened.  ``cut()`` drops every current connection now.
    """

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.triggered = threading.Event()
        self._armed = None
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._closed = False
        #: while True, new connections are closed at once (a partition)
        self.blocked = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def connect_string(self) -> str:
        return "127.0.0.1:%d" % self.port

    def arm(self, path_contains: str = "", opcodes=CREATE_OPS) -> None:
        self.triggered.clear()
        with self._lock:
            self._armed = (frozenset(opcodes), path_contains)

    def _should_doom(self, op: int, path: str | None) -> bool:
        with self._lock:
            if self._armed is None:
                return False
            ops, contains = self._armed
            if op in ops and path is not None and contains in path:
                self._armed = None
                return True
            return False

    def partition(self) -> None:
        """Drop every connection and refuse new ones until :meth:`heal`."""
        self.blocked = True
        self.cut()

    def heal(self) -> None:
        self.blocked = False

    def cut(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.close()

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _accept(self):
        while not self._closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked:
                sock.close()  # the network is "down": refuse
                continue
            try:
                conn = _Conn(self, sock)
            except OSError:
                sock.close()
                continue
            with self._lock:
                self._conns.add(conn)

    def close(self) -> None:
        self._closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        self.cut()
