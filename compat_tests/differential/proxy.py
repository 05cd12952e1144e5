"""A TCP proxy that corrupts one field of one reply type.

Client -> server frames are read to learn each request's xid and opcode;
server -> client frames are passed through, except that the Stat ``version``
of every successful getData reply is incremented.  Used to show that the
differential machine notices a wrong reply; the server itself is untouched.
"""

from __future__ import annotations

import socket
import struct
import threading

_LEN = struct.Struct(">i")
GET_DATA = 4
# GetDataResponse: buffer data, then Stat(czxid, mzxid, ctime, mtime, version, ...)
_VERSION_AFTER_DATA = 8 * 4


class CorruptingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.address = self.listener.getsockname()
        self.corrupted = 0
        self._closing = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, server]
            ops: dict[int, int] = {}
            threading.Thread(target=self._pump, args=(client, server, ops, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, ops, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, ops: dict[int, int],
              requests: bool) -> None:
        buf = bytearray()
        first = True  # the handshake frames carry no xid
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                buf += data
                out = bytearray()
                while len(buf) >= 4:
                    (n,) = _LEN.unpack_from(buf, 0)
                    if len(buf) < 4 + n:
                        break
                    frame = bytearray(buf[4:4 + n])
                    del buf[:4 + n]
                    if first:
                        first = False
                    elif requests and n >= 8:
                        xid, op = struct.unpack_from(">ii", frame, 0)
                        ops[xid] = op
                    elif not requests and n >= 16:
                        xid, _zxid, err = struct.unpack_from(">iqi", frame, 0)
                        if ops.pop(xid, None) == GET_DATA and err == 0:
                            (dlen,) = _LEN.unpack_from(frame, 16)
                            at = 16 + 4 + max(dlen, 0) + _VERSION_AFTER_DATA
                            (v,) = _LEN.unpack_from(frame, at)
                            _LEN.pack_into(frame, at, v + 1)
                            self.corrupted += 1
                    out += _LEN.pack(n) + frame
                if out:
                    dst.sendall(out)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
