"""Hostile connections to real server processes, over sockets.

Each function here opens connections to a server's ports and sends what a
``Mutator`` seeded by the caller makes; it reads whatever comes back (a
server that stops reading while its replies pile up would otherwise stall
us) and never judges it: ``zkpy.testing.fuzz.live`` checks the servers.

- ``client_connection``: one client-port connection of one of three kinds:
  a real handshake then many requests (most of the volume: every opcode,
  half of them with mutated bodies, ended by closeSession), a real
  handshake then broken framing, or a hostile handshake (mutated
  ConnectRequests, four-letter words).
- ``peer_connection``: one connection to a quorum or election port: a
  learner's or a voting server's opening, mutated, from an id outside the
  ensemble (or raw noise).
- ``admin_request``: one HTTP request to the AdminServer: a command's path
  and query mutated, headers (Authorization above all) mutated, a snapshot
  or restore body mutated.

A connection ends when the server closes it, or after ``QUIET`` seconds
without anything to read once everything was sent. One that the server keeps
busy for ``ENDLESS`` seconds raises ``Endless`` (the run stops there: a
server that never stops writing to one connection breaks the contract).
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import time
from dataclasses import dataclass

from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.testing.fuzz.clientwire import (
    framed,
    handshake,
    hostile_frame,
    hostile_handshake,
    request_frame,
)
from zkpy.testing.fuzz.mutate import Mutator

QUIET = 0.5  # seconds without a byte from the server, everything sent: it waits for more
ENDLESS = 120.0  # seconds one connection may take, all told
_LEN = struct.Struct(">i")


class Endless(AssertionError):
    """A connection the server neither closed nor let go quiet in ``ENDLESS`` seconds."""


@dataclass
class Sent:
    """What one hostile connection did."""

    frames: int = 0  # client requests sent whole (framed), mutated or not
    connections: int = 0
    closed_by_server: int = 0
    refused: int = 0  # the connection could not be made


def exchange(address: tuple[str, int], data: bytes, quiet: float = QUIET,
             first: bytes | None = None) -> tuple[bytes, bool]:
    """Send ``data`` (after ``first`` and its reply, if given), reading as we go;
    (what came back, whether the server closed the connection)."""
    sock = socket.create_connection(address, timeout=5)
    try:
        sock.setblocking(False)
        got = bytearray()
        if first is not None:
            closed = _pump(sock, first, got, quiet, until_bytes=4)
            if closed:
                return bytes(got), True
        return bytes(got), _pump(sock, data, got, quiet)
    finally:
        sock.close()


def _pump(sock: socket.socket, data: bytes, got: bytearray, quiet: float,
          until_bytes: int | None = None) -> bool:
    """Write ``data`` while reading; True if the server closed the connection."""
    view = memoryview(data)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if view else 0))
    start = len(got)
    last = began = time.monotonic()
    try:
        while True:
            if last - began > ENDLESS:
                raise Endless(f"the server at {sock.getpeername()} kept this connection "
                              f"busy for {ENDLESS:.0f}s ({len(got)} bytes read)")
            if until_bytes is not None and not view and len(got) - start >= until_bytes:
                return False
            events = sel.select(timeout=0.05)
            now = time.monotonic()
            for _key, mask in events:
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(65536)
                    except (ConnectionResetError, BrokenPipeError):
                        return True
                    except BlockingIOError:
                        chunk = None
                    if chunk == b"":
                        return True
                    if chunk:
                        got.extend(chunk)
                        last = now
                if mask & selectors.EVENT_WRITE and view:
                    try:
                        n = sock.send(view[:65536])
                    except (ConnectionResetError, BrokenPipeError):
                        return True
                    except BlockingIOError:
                        n = 0
                    view = view[n:]
                    last = now
                    if not view:
                        sel.modify(sock, selectors.EVENT_READ)
            if not view and now - last > quiet:
                return False
    finally:
        sel.close()


def client_connection(address: tuple[str, int], mut: Mutator, frames: int) -> Sent:
    """One hostile client connection of up to ``frames`` requests."""
    rng = mut.rng
    kind = rng.random()
    sent = Sent(connections=1)
    if kind < 0.8:  # a real session, then requests of every opcode, half mutated
        n = frames
        body = b"".join(_request(mut, xid) for xid in range(1, n + 1))
        body += framed(S.RequestHeader(n + 1, Op.closeSession).encode())
        first: bytes | None = handshake(timeout=rng.choice((400, 2000, 4000)))
        sent.frames = n + 1
    elif kind < 0.9:  # a real session, a few requests, then broken framing
        n = rng.randint(1, 8)
        body = b"".join(request_frame(mut, xid) for xid in range(1, n + 1))
        body += mut.mutate(request_frame(mut, n + 1))
        first, sent.frames = handshake(), n
    else:  # a hostile handshake, perhaps followed by requests
        first = None
        body = hostile_handshake(mut) + b"".join(
            hostile_frame(mut, xid) for xid in range(1, rng.choice((1, 1, 4)) + 1))
    try:
        _, closed = exchange(address, body, QUIET if kind >= 0.8 else 0.2, first)
    except OSError:
        sent.refused = 1
        return sent
    sent.closed_by_server = int(closed)
    return sent


def _request(mut: Mutator, xid: int) -> bytes:
    """Well framed: the body mutated half the time, never the length."""
    frame = request_frame(mut, xid)
    if mut.rng.random() < 0.5:
        return frame
    return framed(mut.mutate(frame[4:]))


def peer_connection(address: tuple[str, int], mut: Mutator, stream: bytes) -> Sent:
    """One connection to a quorum or election port sending ``stream`` mutated
    (or, one time in ten, as it is)."""
    data = stream if mut.rng.random() < 0.1 else mut.mutate(stream)
    sent = Sent(connections=1)
    try:
        _, closed = exchange(address, data, quiet=0.05)
    except OSError:
        sent.refused = 1
        return sent
    sent.closed_by_server = int(closed)
    return sent


_ADMIN_HEADERS = (b"Authorization: digest super:secret", b"Authorization: digest super:wrong",
                  b"Authorization: ip 127.0.0.1", b"Authorization: ", b"Authorization: x509",
                  b"Content-Type: application/octet-stream", b"Transfer-Encoding: chunked",
                  b"Content-Length: -1", b"Content-Length: 99999999999", b"Expect: 100-continue",
                  b"Connection: close", b"Host: \xff\xfe")


def admin_request(address: tuple[str, int], mut: Mutator, commands: list[str],
                  snapshot: bytes) -> Sent:
    """One HTTP request to the AdminServer, mutated somewhere."""
    rng = mut.rng
    name = rng.choice(commands + ["snapshot", "restore", "rest", "snap"])
    method = b"POST" if name in ("restore", "rest") and rng.random() < 0.8 else \
        rng.choice((b"GET", b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"G\x00T"))
    query = rng.choice((b"", b"?streaming=false", b"?traceMask=12", b"?a=%ff&&=b",
                        b"?" + b"x" * rng.choice((10, 5000))))
    path = b"/commands/" + name.encode() + query
    if rng.random() < 0.3:
        path = mut.mutate(path)
    headers = [rng.choice(_ADMIN_HEADERS) for _ in range(rng.randint(0, 3))]
    body = b""
    if method == b"POST":
        body = snapshot if rng.random() < 0.3 else mut.mutate(snapshot)
    if rng.random() < 0.8:
        headers.append(b"Content-Length: %d" % len(body))
    head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
    request = head + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body
    if rng.random() < 0.15:
        request = mut.mutate(request)
    sent = Sent(connections=1)
    try:
        _, closed = exchange(address, request, quiet=0.3)
    except OSError:
        sent.refused = 1
        return sent
    sent.closed_by_server = int(closed)
    return sent


def worker_rng(seed: int, phase: str, worker: int) -> random.Random:
    """The random source of one worker of one phase: a run replays from its seed."""
    return random.Random(f"{seed}:{phase}:{worker}")
