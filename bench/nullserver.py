"""A server that does nothing but answer: the load generator's yardstick.

Contract: speaks just enough of the client protocol for :mod:`bench.loadgen`
(handshake; getData answered with a fixed value and a zero Stat, setData
with a zero Stat, create with the path, delete/sync/closeSession with a bare
header, ping with xid -2), in one process on 127.0.0.1, one thread, no
tree, no disk.  Driving the generator against it shows how many operations
per second the generator can push and what it costs, with the generator
rather than a server as the limit (part ``generator`` of zkbench).
"""

from __future__ import annotations

import multiprocessing as mp
import selectors
import socket
import struct

from bench import wire

_REPLY = struct.Struct(">iiqi")  # length, xid, zxid, err


def _bodies(value_len: int) -> dict[int, bytes]:
    stat = b"\0" * wire.STAT_BYTES
    return {wire.OP_GET: struct.pack(">i", value_len) + b"v" * value_len + stat,
            wire.OP_SET: stat}


def _answer(buf: bytearray, out: list[bytes], bodies: dict[int, bytes]) -> int:
    off, end = 0, len(buf)
    pack = _REPLY.pack
    while end - off >= 12:
        flen, xid, op = wire.HDR.unpack_from(buf, off)
        if end - off - 4 < flen:
            break
        if op == wire.OP_CREATE:  # echo the path: the first field of the request
            (plen,) = wire.LEN.unpack_from(buf, off + 12)
            body = bytes(buf[off + 12:off + 16 + plen])
        else:
            body = bodies.get(op, b"")
        if op == wire.OP_PING:
            xid = wire.XID_PING
        out.append(pack(16 + len(body), xid, 1, 0))
        out.append(body)
        off += 4 + flen
    del buf[:off]
    return off


def serve(sock: socket.socket, value_len: int) -> None:
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, None)
    bodies = _bodies(value_len)
    resp = struct.pack(">iiqi", 0, 30000, 1, 16) + b"\0" * 16 + b"\0"  # ConnectResponse
    hello = wire.LEN.pack(len(resp)) + resp
    state: dict[socket.socket, bytearray | None] = {}
    while True:
        for key, _mask in sel.select():
            if key.data is None:
                conn, _ = sock.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                state[conn] = None
                sel.register(conn, selectors.EVENT_READ, conn)
                continue
            conn = key.data
            try:
                data = conn.recv(1 << 18)
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                state.pop(conn, None)
                continue
            buf = state[conn]
            if buf is None:  # the ConnectRequest: 4 + its length
                buf = bytearray(data)
                (n,) = wire.LEN.unpack_from(buf, 0)
                del buf[:4 + n]
                conn.sendall(hello)
                state[conn] = buf
            else:
                buf += data
            out: list[bytes] = []
            _answer(buf, out, bodies)
            if out:
                conn.sendall(b"".join(out))


class NullServer:
    """The null server in a child process on a free port of 127.0.0.1."""

    def __init__(self, value_len: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.addr = self.sock.getsockname()
        self.proc = mp.get_context("fork").Process(target=serve, args=(self.sock, value_len),
                                                   daemon=True)
        self.proc.start()
        self.sock.close()

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc.pid else []

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(5)
