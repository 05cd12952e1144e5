"""What the real-process ensemble tests share: which kinds run, how clients
retry, waiting for a condition, stopping the clients a test made, and a write
load that remembers every acknowledged write."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError

from zkpy.testing.ensemble import Ensemble, Member
from zkpy.testing.launchers import find_apache_zookeeper

INSTALL, REASON = find_apache_zookeeper()

#: for tests that need the reference: skipped, saying why, when it is absent
REFERENCE = pytest.mark.skipif(INSTALL is None,
                               reason="Apache ZooKeeper unavailable: %s" % REASON)
#: zkpy, and Apache ZooKeeper as the reference
KINDS = ["zkpy", pytest.param("zookeeper", marks=[pytest.mark.reference, REFERENCE])]

#: reconnect promptly to another member (the default back-off reaches seconds)
RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.2}

#: what a write that cannot be served raises (Kazoo's timeout is no KazooException)
FAILED_WRITE = (KazooException, KazooTimeoutError)


def wait_until(pred: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.05)


def stop_all(clients: Iterable[KazooClient]) -> None:
    """Stop and close each client, whatever state the test left it in."""
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


def started(request: pytest.FixtureRequest, ens: Ensemble) -> Iterator[Ensemble]:
    """A fixture's body: start ``ens``, hand it to the test, clean it up after
    (keeping the members' logs when the test failed)."""
    failed_before = request.session.testsfailed
    try:
        ens.start(timeout=60)
    except BaseException:
        ens.cleanup(failed=True)
        raise
    try:
        yield ens
    finally:
        ens.cleanup(failed=request.session.testsfailed > failed_before)


# -- clients on an ensemble ------------------------------------------------------


def clients(session_timeout: float) -> Iterator[Callable[..., KazooClient]]:
    """A fixture's body: ``connect(hosts, **kw)`` makes a started Kazoo client
    (prompt retries), and every client made is stopped at teardown."""
    made: list[KazooClient] = []

    def make(hosts: str, **kw: object) -> KazooClient:
        kw.setdefault("timeout", session_timeout)
        client = KazooClient(hosts=hosts, connection_retry=dict(RETRY), **kw)
        made.append(client)
        client.start(timeout=30)
        return client

    yield make
    stop_all(made)


def on_member(ens: Ensemble, client: KazooClient) -> Member | None:
    """The member *client* is connected to right now."""
    if not client.connected:
        return None
    try:
        host, port = client._connection._socket.getpeername()[:2]
    except (AttributeError, OSError):
        return None
    return ens.member_at(host, port)


def drop_connection(client: KazooClient) -> None:
    """Break the client's TCP connection (the session lives on)."""
    try:
        client._connection._socket.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):
        pass


def view(connect: Callable[..., KazooClient], member: Member, path: str) -> set[str]:
    """Children of *path* as *member* alone serves them after ``sync``."""
    client = connect(member.connect_string)
    try:
        client.sync(path)
        return set(client.get_children(path))
    finally:
        client.stop()


def write(client: KazooClient, path: str, timeout: float = 30.0) -> None:
    """Create *path*, retrying through connection loss until *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_async(path).get(timeout=max(0.1, deadline - time.monotonic()))
            return
        except NodeExistsError:  # an earlier attempt of ours went through
            return
        except FAILED_WRITE:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Loader(threading.Thread):
    """Sequential creates under *path*; remembers every acknowledged one."""

    def __init__(self, client: KazooClient, path: str = "/load") -> None:
        super().__init__(name="ensemble-load", daemon=True)
        self.client, self.path = client, path
        self.acked: list[tuple[float, str]] = []
        self.errors = 0
        self.halt = threading.Event()
        client.ensure_path(path)

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            n += 1
            try:
                made = self.client.create_async(self.path + "/w-", b"%d" % n,
                                                sequence=True).get(timeout=5)
            except Exception:
                self.errors += 1
                time.sleep(0.02)
                continue
            self.acked.append((time.monotonic(), made.rsplit("/", 1)[1]))
            self.halt.wait(0.005)

    def names(self) -> set[str]:
        return {name for _, name in self.acked}

    def acks_since(self, t: float) -> int:
        return sum(1 for when, _ in self.acked if when >= t)

    def max_gap(self, t0: float, t1: float) -> float:
        times = [t0] + [w for w, _ in self.acked if t0 <= w <= t1] + [t1]
        return max(b - a for a, b in zip(times, times[1:], strict=False))

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
