"""A follower's ACKs leave from the log thread (``zkpy.net.threadsend``), in order always.

Each test runs a real loopback TCP connection: our end is wrapped in Twisted's
own ``tcp.Server`` on a ``MemoryReactor`` (no event loop runs: the test calls
``doWrite`` and the calls handed to the reactor itself), and the test reads
what reaches the other end. The log thread's calls are made from the test's
thread: what is held is what each side does with the lock and the buffers,
in every order the two can take.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from test_net_adapters import FakeReactor, StepPool, _txn
from test_sendnow import _received
from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from zkpy.net.disk import DiskWriter
from zkpy.net.peerlinks import QuorumLinks, _Outbound
from zkpy.net.threadsend import CLOSED, SENT, STASHED, ThreadSender
from zkpy.zab import messages as m
from zkpy.zab.events import Append


class Reactor(MemoryReactorClock):
    """Calls handed over from another thread wait until the test runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[Any] = []

    def callFromThread(self, f: Any, *a: Any) -> None:
        self.from_thread.append((f, a))

    def run_from_thread(self) -> None:
        calls, self.from_thread = self.from_thread, []
        for f, a in calls:
            f(*a)


# What a test opened (sockets, senders with their own descriptor): closed after it.
_opened: list[Any] = []


@pytest.fixture(autouse=True)
def _close_what_was_opened() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        theirs, _ = server.accept()
    _opened.extend((ours, theirs))
    ours.setblocking(False)
    theirs.setblocking(False)
    return ours, theirs


def _transport(reactor: Any, sock: socket.socket, proto: Any) -> Any:
    port = SimpleNamespace(_realPortNumber=2)  # what tcp.Server reads of its listening port
    return tcp.Server(sock, proto, ("127.0.0.1", 1), port, 1, reactor)


def _to_leader() -> tuple[QuorumLinks, Any, socket.socket, Reactor]:
    """Our connection to the leader (server 1), made as ``QuorumLinks`` makes it."""
    reactor = Reactor()
    links = QuorumLinks(reactor, 2, {}, lambda sid, pkts: None, lambda sid: None)
    out = _Outbound(links, 1, deadline=10.0)
    links.outbound[1] = out
    ours, theirs = _tcp_pair()
    proto = out.buildProtocol(None)
    proto.makeConnection(_transport(reactor, ours, proto))
    assert links.conns[1] is proto and proto.sender is not None
    _opened.append(proto.sender)
    return links, proto, theirs, reactor


def _acks(*zxids: int) -> bytes:
    return b"".join(m.packet(m.ACK, z).encode() for z in zxids)


def _drain(proto: Any, theirs: socket.socket, expected: int = 0) -> bytes:
    """What reaches the leader once Twisted has written all it holds (and, with
    ``expected``, once that many bytes came: the kernel may still hold some)."""
    got = _received(theirs)
    transport = proto.transport
    deadline = time.monotonic() + 10
    while (transport.dataBuffer or transport._tempDataLen or len(got) < expected):
        assert time.monotonic() < deadline, f"{len(got)} of {expected} bytes came"
        if transport.dataBuffer or transport._tempDataLen:
            transport.doWrite()
        select.select([theirs], [], [], 0.01)
        got += _received(theirs)
    return got + _received(theirs)


def test_with_nothing_waiting_the_thread_sends_at_once() -> None:
    links, proto, theirs, reactor = _to_leader()
    ack = m.packet(m.ACK, 5)
    rest = links.send_from_thread([(1, ack, links.token(1))])
    assert rest == []
    assert _received(theirs) == _acks(5)
    assert reactor.from_thread == []  # the reactor has nothing to do for it


def test_the_threads_bytes_wait_behind_twisteds_and_go_before_the_reactors_next() -> None:
    links, proto, theirs, reactor = _to_leader()
    links.send(1, m.packet(m.REQUEST, 0, b"first"))
    proto.transport.write(proto.out.pop())  # in Twisted's buffer, not yet sent
    links._queued.clear()
    assert proto.sender.send(_acks(5)) == STASHED
    assert proto.sender.send(_acks(6)) == STASHED  # behind the first, one call for both
    assert len(reactor.from_thread) == 1
    assert _received(theirs) == b""
    # Twisted's buffer drains; the next ACK must still not overtake the stash.
    proto.transport.doWrite()
    assert _received(theirs) == m.packet(m.REQUEST, 0, b"first").encode()
    assert proto.sender.send(_acks(7)) == STASHED
    links.send(1, m.packet(m.PING, 1))  # the reactor's own, sent after the stash
    links.flush()
    assert _drain(proto, theirs) == _acks(5, 6, 7) + m.packet(m.PING, 1).encode()
    reactor.run_from_thread()  # the stash's own call finds it sent
    assert _drain(proto, theirs) == b""
    assert proto.sender.send(_acks(8)) == SENT


def test_the_stash_is_sent_by_the_reactor_when_it_has_nothing_else() -> None:
    links, proto, theirs, reactor = _to_leader()
    proto.transport.write(m.packet(m.PING, 1).encode())
    assert proto.sender.send(_acks(5)) == STASHED
    proto.transport.doWrite()
    reactor.run_from_thread()
    assert _drain(proto, theirs) == m.packet(m.PING, 1).encode() + _acks(5)


def test_what_the_socket_does_not_take_goes_before_anything_else() -> None:
    """A send the kernel takes only part of: no other bytes land inside it."""
    links, proto, theirs, reactor = _to_leader()
    big = bytes(range(256)) * 65536  # 16 MiB, far more than the kernel takes unread
    assert proto.sender.send(big) == STASHED
    got = _received(theirs)
    assert 0 < len(got) < len(big)
    links.send(1, m.packet(m.REQUEST, 0, b"next"))
    links.flush()  # the reactor's next packet: after the rest of ``big``
    proto.write(m.packet(m.PING, 2))  # and a packet written at once, after both
    expected = big + m.packet(m.REQUEST, 0, b"next").encode() + m.packet(m.PING, 2).encode()
    got += _drain(proto, theirs, len(expected) - len(got))
    assert got == expected


def test_a_closed_connection_takes_nothing_from_the_thread() -> None:
    links, proto, theirs, reactor = _to_leader()
    token = links.token(1)
    sender = proto.sender
    proto.transport.write(m.packet(m.PING, 1).encode())
    assert sender.send(_acks(5)) == STASHED
    own = sender._sock
    assert own is not None and own.fileno() != proto.transport.socket.fileno()
    links.disconnect(1)  # sends what it holds (the stash included), then closes
    assert sender.closed and own.fileno() == -1  # our descriptor is closed with it
    assert sender.send(_acks(6)) == CLOSED
    assert links.send_from_thread([(1, m.packet(m.ACK, 7), token)]) == []
    assert _drain(proto, theirs) == m.packet(m.PING, 1).encode() + _acks(5)


def test_a_connection_lost_closes_the_threads_descriptor() -> None:
    links, proto, theirs, reactor = _to_leader()
    sender = proto.sender
    own = sender._sock
    assert own is not None and own.fileno() >= 0
    proto.transport.connectionLost(Failure(ConnectionDone()))
    assert sender.closed and own.fileno() == -1
    assert sender.send(_acks(5)) == CLOSED


def test_only_an_all_ack_share_leaves_from_the_thread() -> None:
    """ACKEPOCH and the like stay with the ACKs around them on the reactor, in
    order; messages to ourselves and to connections without a sender too."""
    links, proto, theirs, reactor = _to_leader()
    token = links.token(1)
    mixed = [(1, m.packet(m.ACKEPOCH, 4), token), (1, m.packet(m.ACK, 5), token)]
    assert links.send_from_thread(mixed) == mixed
    assert _received(theirs) == b""
    own = (2, m.packet(m.ACK, 6), None)  # a leader's own ACK: stepped in by the reactor
    pending = (3, m.packet(m.ACK, 6), object())  # not a connection with a sender
    acks = [(1, m.packet(m.ACK, 6), token), own, (1, m.packet(m.ACK, 7), token), pending]
    assert links.send_from_thread(acks) == [own, pending]
    assert _received(theirs) == _acks(6, 7)  # both in one send, in order


def test_a_learners_connection_and_a_tls_one_have_no_sender() -> None:
    reactor = Reactor()
    links = QuorumLinks(reactor, 1, {}, lambda sid, pkts: None, lambda sid: None)
    ours, theirs = _tcp_pair()
    proto = links.buildProtocol(None)  # a learner connecting to us, the leader
    proto.makeConnection(_transport(reactor, ours, proto))
    proto.dataReceived(m.follower_info(2, 1).encode())
    assert links.conns[2] is proto and proto.sender is None
    assert ThreadSender.for_transport(StringTransport()) is None


def test_the_disk_writer_sends_from_the_log_thread_after_the_sync(tmp_path: Any) -> None:
    reactor, pool = FakeReactor(), StepPool()
    disk = DiskWriter(reactor, str(tmp_path), str(tmp_path), 0, prealloc_bytes=4096,
                      force_sync=True, pool=pool, snap_pool=StepPool())
    synced: list[Any] = []
    disk.on_synced = lambda after, last: synced.append((after, last))
    seen: list[Any] = []
    plain_sync = disk._plain_sync

    def sync() -> None:
        plain_sync()
        seen.append("synced")

    def send_from_thread(after: list[Any]) -> list[Any]:
        seen.append(list(after))
        return after[1:]

    disk._plain_sync = sync
    disk.send_from_thread = send_from_thread
    ours, theirs = (1, m.packet(m.ACK, 1), None), (2, m.packet(m.ACK, 1), "token")
    disk.submit([Append(1, _txn(1, "/a"))], [theirs, ours])
    reactor.advance(0)
    assert seen == []  # nothing leaves before the sync
    pool.run()
    assert seen == ["synced", [theirs, ours]]  # after it, on the log thread
    assert synced == [([ours], 1)]  # the rest is the reactor's
