"""NaiveLock / FairLock: exclusion, fairness, re-entrancy, timeouts,
cancellation, session loss, lost replies, vanishing predecessors,
interoperation with Kazoo's Lock."""

from __future__ import annotations

import threading
import time

import pytest
from kazoo.exceptions import LockTimeout
from kazoo.recipe.lock import Lock as KazooLock

from recipes import CancelledError, FairLock, NaiveLock, SessionLostError
from recipes.locks import ReadLock

from .conftest import Holder, expire_session, wait_until

LOCKS = [NaiveLock, FairLock]


def _children(zk, path):
    return sorted(zk.get_children(path)) if zk.exists(path) else []


def _exclusion_run(make_client, path, make_lock, n_threads=8, rounds=4):
    """n threads, each with its own session, increment a counter znode with
    an unprotected read-modify-write inside the lock."""
    counter = path + "-counter"
    admin = make_client()
    admin.create(counter, b"0", makepath=True)
    inside = []
    overlaps = []
    errors = []

    def worker(i):
        c = make_client()
        lock = make_lock(c, i)
        try:
            for _ in range(rounds):
                with lock:
                    inside.append(i)
                    if len(inside) > 1:
                        overlaps.append(list(inside))
                    v = int(c.get(counter)[0])
                    time.sleep(0.002)
                    c.set(counter, str(v + 1).encode())
                    inside.remove(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert not overlaps
    assert int(admin.get(counter)[0]) == n_threads * rounds


@pytest.mark.parametrize("cls", LOCKS, ids=lambda c: c.__name__)
def test_mutual_exclusion_threads(make_client, path, cls):
    _exclusion_run(make_client, path, lambda c, i: cls(c, path + "/lock", "t%d" % i))


def test_fair_lock_interoperates_with_kazoo_lock(make_client, path):
    """Half the threads use Kazoo's Lock, half FairLock, on one path."""

    def make(c, i):
        return KazooLock(c, path, "k%d" % i) if i % 2 else FairLock(c, path, "r%d" % i)

    _exclusion_run(make_client, path, make)


def test_kazoo_sees_our_holder_and_waits(make_client, path):
    a, b = make_client(), make_client()
    ours = FairLock(a, path, "ours")
    assert ours.acquire()
    theirs = KazooLock(b, path, "theirs")
    with pytest.raises(LockTimeout):
        theirs.acquire(timeout=0.5)
    assert theirs.contenders() == ["ours"]
    got = threading.Event()
    t = threading.Thread(target=lambda: theirs.acquire() and got.set())
    t.start()
    time.sleep(0.3)
    assert not got.is_set()
    ours.release()
    assert got.wait(10)
    assert not ours.acquire(timeout=0.3)
    theirs.release()
    t.join()
    assert ours.acquire(timeout=5)
    ours.release()


def test_curator_layout_names(zk, path):
    lock = FairLock(zk, path, layout="curator")
    with lock:
        (name,) = zk.get_children(path)
    assert name.startswith("_c_") and name[:-10].endswith("-lock-")
    kz = FairLock(zk, path)
    with kz:
        (name,) = zk.get_children(path)
    assert name.startswith("_c_") and name[:-10].endswith("-__lock__")


def test_fair_lock_is_first_come_first_served(make_client, path):
    holder = FairLock(make_client(), path, "holder")
    holder.acquire()
    order = []
    locks = [FairLock(make_client(), path, "w%d" % i) for i in range(5)]
    threads = []
    for i, lk in enumerate(locks):
        def run(lk=lk, i=i):
            with lk:
                order.append(i)
        t = threading.Thread(target=run)
        t.start()
        threads.append(t)
        assert wait_until(lambda lk=lk: lk.waiting)  # queued in this order
    assert holder.contenders() == ["holder"] + ["w%d" % i for i in range(5)]
    holder.release()
    for t in threads:
        t.join(20)
    assert order == list(range(5))


@pytest.mark.parametrize("cls", LOCKS, ids=lambda c: c.__name__)
def test_reentrant_and_thread_serialised(zk, path, cls):
    lock = cls(zk, path + "/l")
    assert lock.acquire()
    assert lock.acquire()  # re-entrant: no second znode, no deadlock
    node = lock.node
    lock.release()
    assert lock.is_acquired and zk.exists(node)
    # another thread sharing the object must wait for the full release
    got = threading.Event()

    def other():
        with lock:
            got.set()

    t = threading.Thread(target=other)
    t.start()
    assert not got.wait(0.3)
    with pytest.raises(RuntimeError):
        _release_from_other(lock)
    lock.release()
    assert got.wait(10)
    t.join()
    assert not lock.is_acquired


def _release_from_other(lock):
    err = []

    def f():
        try:
            lock.release()
        except RuntimeError as exc:
            err.append(exc)

    t = threading.Thread(target=f)
    t.start()
    t.join()
    if err:
        raise err[0]


@pytest.mark.parametrize("cls", LOCKS, ids=lambda c: c.__name__)
def test_timeout_and_nonblocking(make_client, path, cls):
    lp = path + "/l"
    a, b = make_client(), make_client()
    holder = cls(a, lp, "a")
    holder.acquire()
    other = cls(b, lp, "b")
    t0 = time.monotonic()
    assert other.acquire(timeout=0.5) is False
    assert time.monotonic() - t0 < 5
    assert other.acquire(blocking=False) is False
    assert not other.is_acquired
    if cls is FairLock:
        assert len(a.get_children(lp)) == 1  # the waiter's znode was removed
    holder.release()
    assert other.acquire(timeout=5)
    other.release()


@pytest.mark.parametrize("cls", LOCKS, ids=lambda c: c.__name__)
def test_cancel(make_client, path, cls):
    lp = path + "/l"
    a, b = make_client(), make_client()
    holder = cls(a, lp)
    holder.acquire()
    waiter = cls(b, lp)
    result = []

    def run():
        try:
            waiter.acquire()
            result.append("acquired")
        except CancelledError:
            result.append("cancelled")

    t = threading.Thread(target=run)
    t.start()
    assert wait_until(lambda: waiter.waiting)
    waiter.cancel()
    t.join(10)
    assert result == ["cancelled"]
    if cls is FairLock:
        assert len(a.get_children(lp)) == 1
    holder.release()


def test_predecessor_that_vanishes_without_holding(make_client, path):
    """A holds; B waits; C waits behind B.  B gives up: C is notified but
    must not take the lock -- it must re-check and wait for A."""
    a, b, c = make_client(), make_client(), make_client()
    la, lb, lc = FairLock(a, path, "a"), FairLock(b, path, "b"), FairLock(c, path, "c")
    la.acquire()
    hb = Holder(lb, timeout=1.0)
    assert wait_until(lambda: lb.waiting)
    hc = Holder(lc)
    assert wait_until(lambda: lc.waiting)
    assert hb.finished.wait(10) and hb.result is False  # B timed out, znode deleted
    assert wait_until(lambda: lc.notifications == 1)
    assert wait_until(lambda: lc.waiting)  # parked again, now behind A
    assert not hc.acquired.wait(0.3)
    assert la.is_acquired
    la.release()
    assert hc.acquired.wait(10)
    assert lc.notifications == 2
    hc.release()


def test_holder_session_expires(make_client, server, path):
    """The holder's session expires while B waits: B gets the lock, A
    learns it lost the lock."""
    a, b = make_client(), make_client()
    la, lb = FairLock(a, path, "a"), FairLock(b, path, "b")
    la.acquire()
    hb = Holder(lb)
    assert wait_until(lambda: lb.waiting)
    lost = []
    la.on_lost.append(lambda lock: lost.append(lock))
    expire_session(a, server.connect_string)
    assert hb.acquired.wait(10)
    assert la.lost.is_set() and not la.is_acquired and not la.is_held()
    assert lost == [la]
    la.release()  # after loss: no error, and B's znode is untouched
    assert lb.is_acquired and b.exists(lb.node)
    hb.release()
    # A can take the lock again on its new session
    assert la.acquire(timeout=5)
    la.release()


def test_naive_holder_loss_does_not_delete_new_holder(make_client, server, path):
    lp = path + "/l"
    a, b = make_client(), make_client()
    la, lb = NaiveLock(a, lp, "a"), NaiveLock(b, lp, "b")
    la.acquire()
    hb = Holder(lb)
    assert wait_until(lambda: lb.waiting)
    expire_session(a, server.connect_string)
    assert hb.acquired.wait(10)
    assert la.lost.is_set()
    la.release()
    assert b.exists(lp) is not None  # still B's
    hb.release()


@pytest.mark.parametrize("cls", LOCKS, ids=lambda c: c.__name__)
def test_session_expires_while_waiting(make_client, server, path, cls):
    lp = path + "/l"
    a, b = make_client(), make_client()
    holder = cls(a, lp, "a")
    holder.acquire()
    waiter = cls(b, lp, "b")
    result = []

    def run():
        try:
            result.append(waiter.acquire())
        except SessionLostError:
            result.append("lost")

    t = threading.Thread(target=run)
    t.start()
    assert wait_until(lambda: waiter.waiting)
    expire_session(b, server.connect_string)
    t.join(10)
    assert result == ["lost"]
    if cls is FairLock:
        assert a.get_children(lp) == [holder.node.rsplit("/", 1)[1]]
    holder.release()
    assert waiter.acquire(timeout=5)  # works again on the new session
    waiter.release()


@pytest.mark.parametrize("cls", LOCKS, ids=lambda c: c.__name__)
def test_lost_create_reply_is_recovered(make_client, proxy, path, cls):
    """The create reaches the server, the connection drops before the
    reply: the lock finds its znode again (by its _c_<uuid>- prefix, or
    for the naive lock by owner and data) instead of leaving an orphan."""
    lp = path + "/l"
    direct = make_client()
    c = make_client(proxy.connect_string)
    lock = cls(c, lp, "p")
    proxy.arm(path_contains=lp)
    assert lock.acquire(timeout=15)
    assert proxy.triggered.is_set()
    if cls is FairLock:
        assert direct.get_children(lp) == [lock.node.rsplit("/", 1)[1]]
    else:
        assert direct.exists(lp).ephemeralOwner == c.client_id[0]
    lock.release()
    if cls is FairLock:
        assert direct.get_children(lp) == []
    else:
        assert direct.exists(lp) is None


def test_lost_create_reply_while_contended(make_client, proxy, path):
    direct = make_client()
    holder = FairLock(direct, path, "holder")
    holder.acquire()
    c = make_client(proxy.connect_string)
    lock = FairLock(c, path, "p")
    proxy.arm(path_contains=path + "/_c_")
    h = Holder(lock)
    assert proxy.triggered.wait(10)
    assert wait_until(lambda: lock.waiting)
    assert len(direct.get_children(path)) == 2  # holder + exactly one of ours
    holder.release()
    assert h.acquired.wait(10)
    h.release()
    assert direct.get_children(path) == []


def test_connection_loss_while_holding_keeps_lock(make_client, proxy, path):
    """A short disconnect (session survives): still the holder afterwards,
    but is_held() is False while disconnected."""
    c = make_client(proxy.connect_string)
    lock = FairLock(c, path)
    lock.acquire()
    proxy.cut()
    assert wait_until(lambda: c.connected, 15)
    assert lock.is_acquired and lock.is_held() and not lock.lost.is_set()
    lock.release()


def test_read_lock_not_blocked_by_kazoo_reader(make_client, path):
    from kazoo.recipe.lock import ReadLock as KazooReadLock

    a, b = make_client(), make_client()
    theirs = KazooReadLock(a, path, "k")
    theirs.acquire()
    ours = ReadLock(b, path, "r")
    assert ours.acquire(timeout=5)
    ours.release()
    theirs.release()


def test_holder_partitioned_until_its_session_expires(make_client, proxy, path):
    """No tricks: the holder is cut off for longer than its session timeout,
    the server expires the session, the waiter gets the lock; when the
    holder's network comes back it learns it lost the lock."""
    a = make_client(proxy.connect_string, timeout=1.0)
    b = make_client()
    la, lb = FairLock(a, path, "a"), FairLock(b, path, "b")
    la.acquire()
    hb = Holder(lb)
    assert wait_until(lambda: lb.waiting)
    proxy.partition()
    assert wait_until(lambda: not la.is_held(), 5)  # SUSPENDED: stop trusting it
    assert hb.acquired.wait(15)  # the server expired A's session
    proxy.heal()
    assert la.lost.wait(15)
    assert not la.is_acquired
    la.release()
    assert b.exists(lb.node)
    hb.release()


def test_waiter_survives_connection_loss(make_client, proxy, path):
    direct = make_client()
    holder = FairLock(direct, path, "h")
    holder.acquire()
    c = make_client(proxy.connect_string)
    lock = FairLock(c, path, "p")
    h = Holder(lock)
    assert wait_until(lambda: lock.waiting)
    node = lock.node
    proxy.cut()
    assert wait_until(lambda: c.connected, 15)
    assert not h.acquired.wait(0.3)
    assert h.error is None and not h.finished.is_set()
    assert lock.node == node  # same queue position
    holder.release()
    assert h.acquired.wait(10)
    h.release()
