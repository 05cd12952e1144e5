"""``zkpy.net.sendnow``: bytes leave at once when nothing waits, in order always.

Each test wraps one end of a real socket pair in Twisted's own ``tcp.Server``
on a ``MemoryReactor`` (no event loop runs: the test calls ``doWrite`` itself,
where the reactor would have), and reads what reaches the other end.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

from twisted.internet import protocol, tcp
from twisted.internet.testing import MemoryReactor, StringTransport

from zkpy.net.sendnow import send_now


def _pair(sndbuf: int | None = None) -> tuple[Any, socket.socket, MemoryReactor]:
    ours, theirs = socket.socketpair()
    if sndbuf is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    theirs.setblocking(False)
    reactor = MemoryReactor()
    port = SimpleNamespace(_realPortNumber=2)  # what tcp.Server reads of its listening port
    transport = tcp.Server(ours, protocol.Protocol(), ("127.0.0.1", 1), port, 1, reactor)
    return transport, theirs, reactor


def _received(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_with_nothing_queued_the_bytes_are_sent_at_once() -> None:
    transport, theirs, reactor = _pair()
    send_now(transport, b"PROPOSAL")
    assert _received(theirs) == b"PROPOSAL"
    # Nothing was left for Twisted: no writability registered, no buffer.
    assert transport not in reactor.getWriters()
    assert not transport.dataBuffer and not transport._tempDataLen


def test_bytes_queued_in_twisted_go_first() -> None:
    transport, theirs, reactor = _pair()
    transport.write(b"first,")
    send_now(transport, b"second")
    assert _received(theirs) == b""  # both wait for the reactor's turn
    assert transport in reactor.getWriters()
    transport.doWrite()
    assert _received(theirs) == b"first,second"


def test_what_the_socket_does_not_take_is_left_to_twisted_in_order() -> None:
    transport, theirs, reactor = _pair(sndbuf=4096)
    payload = bytes(range(256)) * 8192  # 2 MiB, far more than the socket takes
    send_now(transport, payload)
    got = _received(theirs)
    assert 0 < len(got) < len(payload)  # a part went at once, the rest waits
    assert transport in reactor.getWriters()
    send_now(transport, b"after")  # must not overtake what waits
    while transport in reactor.getWriters():
        transport.doWrite()
        got += _received(theirs)
    got += _received(theirs)
    assert got == payload + b"after"


def test_a_socket_that_fails_leaves_the_error_to_twisted() -> None:
    transport, theirs, reactor = _pair()
    theirs.close()
    send_now(transport, b"lost")  # EPIPE: no exception here
    assert transport in reactor.getWriters()
    # Twisted finds the error on its turn and reports the connection lost.
    assert transport.doWrite() is not None


def test_a_closing_transport_and_other_transports_just_get_write() -> None:
    transport, theirs, reactor = _pair()
    transport.loseConnection()
    send_now(transport, b"late")
    assert _received(theirs) == b""
    tls_like = StringTransport()
    send_now(tls_like, b"reply")
    assert tls_like.value() == b"reply"
