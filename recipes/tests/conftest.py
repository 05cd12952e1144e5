"""Fixtures: each test module runs against zkpy and Apache ZooKeeper
(``server`` is module-scoped and parametrized over both)."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from zkpy.testing.launchers import find_apache_zookeeper, server_from_name

from .proxy import FaultProxy

SERVER_SETTINGS = {"tickTime": 200, "minSessionTimeout": 400, "maxSessionTimeout": 20000}


@pytest.fixture(scope="module", params=["zkpy", "zookeeper"])
def server(request):
    if request.param == "zookeeper":
        install, reason = find_apache_zookeeper()
        if install is None:
            pytest.skip(reason)
    srv = server_from_name(request.param, settings=SERVER_SETTINGS)
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
def make_client(server):
    """``make_client(hosts=None, **kw)`` -> a started KazooClient, stopped
    after the test."""
    clients = []

    def make(hosts=None, **kw):
        kw.setdefault("timeout", 10)
        c = KazooClient(hosts or server.connect_string, **kw)
        c.start(timeout=15)
        clients.append(c)
        return c

    yield make
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


@pytest.fixture
def zk(make_client):
    return make_client()


@pytest.fixture
def path(request):
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:60]
    return "/recipes-test/%s-%s" % (name, uuid.uuid4().hex[:6])


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.address)
    try:
        yield p
    finally:
        p.close()


def wait_until(pred, timeout=10.0, interval=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def expire_session(client: KazooClient, hosts: str, timeout: float = 15.0) -> None:
    """End *client*'s session the way a server does on expiry: attach a
    second client to the same session and close it.  Returns when *client*
    has seen LOST and is connected again on a new session."""
    states = []
    old = client.client_id[0]

    def listener(state):
        states.append(state)

    client.add_listener(listener)
    try:
        sid, pw = client.client_id
        other = KazooClient(hosts, client_id=(sid, pw), timeout=10)
        other.start(timeout=15)
        other.stop()
        other.close()
        assert wait_until(lambda: KazooState.LOST in states, timeout), states
        assert wait_until(lambda: client.connected and client.client_id[0] != old, timeout)
    finally:
        client.remove_listener(listener)


class Holder:
    """Acquire *lock* on a thread of its own and keep it until
    :meth:`release` (the locks are owned by the acquiring thread)."""

    def __init__(self, lock, timeout=None):
        import threading

        self.lock = lock
        self.timeout = timeout
        self.acquired = threading.Event()
        self.finished = threading.Event()
        self.result = None
        self.error = None
        self._go = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self.result = self.lock.acquire(timeout=self.timeout)
            if self.result:
                self.acquired.set()
                self._go.wait(60)
                self.lock.release()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.finished.set()

    def release(self, timeout=10):
        self._go.set()
        self._thread.join(timeout)
        assert self.finished.is_set()
