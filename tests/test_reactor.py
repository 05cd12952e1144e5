"""zkpy.net.reactor: the serving reactor dispatches each ready descriptor as Twisted's does."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.python.failure import Failure

from zkpy.net import reactor as serving

pytestmark = pytest.mark.skipif(serving.ServingReactor is None, reason="epoll is Linux's")


class Reader(FileDescriptor):
    """Reads its end of a socket pair; ``then`` runs inside each read."""

    def __init__(self, reactor, sock, then=None):
        super().__init__(reactor)
        self.sock = sock
        self.then = then
        self.got: list[bytes] = []
        self.lost: list[Failure] = []

    def fileno(self):
        return self.sock.fileno() if self.sock is not None else -1

    def doRead(self):
        self.got.append(self.sock.recv(100))
        if self.then is not None:
            self.then()

    def connectionLost(self, reason):
        self.lost.append(reason)
        super().connectionLost(reason)


@pytest.fixture
def reactor():
    r = serving.ServingReactor()
    yield r
    for fd in list(r._selectables):  # the tests' sockets are closed by now
        del r._selectables[fd]
    waker = getattr(r, "waker", None)
    if waker is not None:
        waker.connectionLost(None)
    r._poller.close()


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    return a, b


def test_a_ready_descriptor_is_read(reactor):
    a, b = _pair()
    with a, b:
        r = Reader(reactor, a)
        reactor.addReader(r)
        b.send(b"ping")
        reactor.doPoll(1.0)
        assert r.got == [b"ping"]


def test_an_exception_in_a_read_closes_that_descriptor_only(reactor):
    a, b = _pair()
    c, d = _pair()
    with a, b, c, d:
        def boom():
            raise ValueError("bad packet")

        bad = Reader(reactor, a, then=boom)
        good = Reader(reactor, c)
        reactor.addReader(bad)
        reactor.addReader(good)
        b.send(b"x")
        d.send(b"y")
        reactor.doPoll(1.0)
        assert good.got == [b"y"] and not good.lost
        assert len(bad.lost) == 1 and bad.lost[0].check(ValueError)
        assert bad not in reactor.getReaders() and good in reactor.getReaders()


def test_a_descriptor_removed_by_an_earlier_event_of_the_same_poll_is_skipped(reactor):
    a, b = _pair()
    c, d = _pair()
    with a, b, c, d:
        first: list[Reader] = []
        readers: list[Reader] = []

        def drop_the_other():
            other = readers[1] if first[0] is readers[0] else readers[0]
            reactor.removeReader(other)

        def note(i):
            def then():
                if not first:
                    first.append(readers[i])
                    drop_the_other()
            return then

        readers.extend([Reader(reactor, a, then=note(0)), Reader(reactor, c, then=note(1))])
        for r in readers:
            reactor.addReader(r)
        b.send(b"1")
        d.send(b"2")
        reactor.doPoll(1.0)
        assert [len(r.got) for r in readers].count(1) == 1
        assert [len(r.got) for r in readers].count(0) == 1


def test_install_makes_it_the_reactor_once():
    code = ("from zkpy.net import reactor as s\n"
            "first = s.install()\n"
            "from twisted.internet import reactor\n"
            "print(first, s.install(), type(reactor).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "ServingReactor"]
