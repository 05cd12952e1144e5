"""ReadWriteLock: readers share, writers exclude, queue order respected;
interoperation with Kazoo's ReadLock/WriteLock."""

from __future__ import annotations

import threading
import time

from kazoo.recipe.lock import ReadLock as KazooReadLock
from kazoo.recipe.lock import WriteLock as KazooWriteLock

from recipes import ReadWriteLock

from .conftest import Holder, expire_session, wait_until


def test_readers_share(make_client, path):
    r1 = ReadWriteLock(make_client(), path, "r1").read_lock
    r2 = ReadWriteLock(make_client(), path, "r2").read_lock
    assert r1.acquire(timeout=5)
    assert r2.acquire(timeout=5)
    r1.release()
    r2.release()


def test_writer_waits_for_earlier_readers_and_writers(make_client, path):
    r = ReadWriteLock(make_client(), path, "r").read_lock
    w = ReadWriteLock(make_client(), path, "w").write_lock
    w2 = ReadWriteLock(make_client(), path, "w2").write_lock
    r.acquire()
    hw = Holder(w)
    assert wait_until(lambda: w.waiting)
    assert not hw.acquired.wait(0.3)
    hw2 = Holder(w2)
    assert wait_until(lambda: w2.waiting)
    r.release()
    assert hw.acquired.wait(10)
    assert not hw2.acquired.wait(0.3)
    hw.release()
    assert hw2.acquired.wait(10)
    hw2.release()


def test_reader_waits_only_for_earlier_writer(make_client, path):
    """r1 reads; w queues; r2 queues after w: r2 must wait for w (no
    writer starvation), and a reader queued before w does not."""
    r1 = ReadWriteLock(make_client(), path, "r1").read_lock
    w = ReadWriteLock(make_client(), path, "w").write_lock
    r2 = ReadWriteLock(make_client(), path, "r2").read_lock
    r1.acquire()
    hw = Holder(w)
    assert wait_until(lambda: w.waiting)
    hr2 = Holder(r2)
    assert wait_until(lambda: r2.waiting)
    assert not hr2.acquired.wait(0.3)
    r1.release()
    assert hw.acquired.wait(10)
    assert not hr2.acquired.is_set()
    hw.release()
    assert hr2.acquired.wait(10)
    hr2.release()


def test_many_readers_and_writers(make_client, path):
    state = {"readers": 0, "writers": 0}
    bad = []
    guard = threading.Lock()

    def worker(i):
        rw = ReadWriteLock(make_client(), path, "c%d" % i)
        for j in range(4):
            lock = rw.write_lock if (i + j) % 3 == 0 else rw.read_lock
            kind = "writers" if lock is rw.write_lock else "readers"
            with lock:
                with guard:
                    state[kind] += 1
                    if state["writers"] > 1 or (state["writers"] and state["readers"]):
                        bad.append(dict(state))
                time.sleep(0.003)
                with guard:
                    state[kind] -= 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not bad


def test_interop_with_kazoo_rwlock(make_client, path):
    a, b = make_client(), make_client()
    kw = KazooWriteLock(a, path, "kw")
    kw.acquire()
    ours = ReadWriteLock(b, path, "r")
    assert not ours.read_lock.acquire(timeout=0.4)  # Kazoo's writer blocks our reader
    kw.release()
    assert ours.read_lock.acquire(timeout=5)
    kr = KazooReadLock(a, path, "kr")
    assert kr.acquire(timeout=5)  # readers share across implementations
    kw2 = KazooWriteLock(make_client(), path, "kw2")
    got = threading.Event()
    t = threading.Thread(target=lambda: kw2.acquire() and got.set())
    t.start()
    time.sleep(0.3)
    assert not got.is_set()  # Kazoo's writer waits for our reader (and theirs)
    kr.release()
    time.sleep(0.2)
    assert not got.is_set()
    ours.read_lock.release()
    assert got.wait(10)
    assert not ours.write_lock.acquire(timeout=0.4)  # and our writer for theirs
    kw2.release()
    t.join()
    assert ours.write_lock.acquire(timeout=5)
    ours.write_lock.release()


def test_reader_session_expiry_lets_writer_in(make_client, server, path):
    a, b = make_client(), make_client()
    r = ReadWriteLock(a, path, "r").read_lock
    w = ReadWriteLock(b, path, "w").write_lock
    r.acquire()
    hw = Holder(w)
    assert wait_until(lambda: w.waiting)
    expire_session(a, server.connect_string)
    assert hw.acquired.wait(10)
    assert r.lost.is_set()
    r.release()
    hw.release()
