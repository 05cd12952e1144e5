"""Barrier and DoubleBarrier, including mixed Kazoo participants."""

from __future__ import annotations

import threading
import time

from kazoo.recipe.barrier import Barrier as KazooBarrier
from kazoo.recipe.barrier import DoubleBarrier as KazooDoubleBarrier

from recipes import Barrier, DoubleBarrier

from .conftest import wait_until


def test_barrier_holds_until_removed(make_client, path):
    Barrier(make_client(), path).create()
    passed = []
    clients = [make_client() for _ in range(4)]

    def wait(c, i):
        if Barrier(c, path).wait(20):
            passed.append(i)

    threads = [threading.Thread(target=wait, args=(c, i)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    assert passed == []
    assert not Barrier(clients[0], path).wait(0.2)
    assert KazooBarrier(clients[0], path).remove()  # Kazoo's barrier is the same znode
    for t in threads:
        t.join(10)
    assert sorted(passed) == [0, 1, 2, 3]
    assert Barrier(clients[0], path).wait(0)


def _double_barrier_run(make_client, path, n, make):
    arrived, entered, leaving, left = [], [], [], []
    errors = []

    def run(i):
        try:
            b = make(make_client(), i)
            time.sleep(0.05 * i)
            arrived.append(i)
            r = b.enter() if not isinstance(b, DoubleBarrier) else b.enter(timeout=30)
            assert r is not False
            entered.append((i, len(arrived)))
            time.sleep(0.05 * (n - i))
            leaving.append(i)
            b.leave() if not isinstance(b, DoubleBarrier) else b.leave(timeout=30)
            left.append((i, len(leaving)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    # nobody got in before all had arrived, nobody out before all were leaving
    assert sorted(i for i, _ in entered) == list(range(n))
    assert all(count == n for _, count in entered)
    assert all(count == n for _, count in left)


def test_double_barrier(make_client, path):
    _double_barrier_run(make_client, path, 5, lambda c, i: DoubleBarrier(c, path, 5, "m%d" % i))
    assert make_client().get_children(path) == []


def test_double_barrier_mixed_with_kazoo(make_client, path):
    def make(c, i):
        if i % 2:
            return KazooDoubleBarrier(c, path, 4, "k%d" % i)
        return DoubleBarrier(c, path, 4, "r%d" % i)

    _double_barrier_run(make_client, path, 4, make)


def test_double_barrier_enter_timeout_removes_member(make_client, path):
    c = make_client()
    b = DoubleBarrier(c, path, 3)
    assert b.enter(timeout=0.3) is False
    assert c.get_children(path) == []


def test_double_barrier_lost_create_reply(make_client, proxy, path):
    direct = make_client()
    c = make_client(proxy.connect_string)
    b1 = DoubleBarrier(c, path, 2, "p")
    b2 = DoubleBarrier(direct, path, 2, "d")
    proxy.arm(path_contains=b1.name)
    done = threading.Event()
    t = threading.Thread(target=lambda: b1.enter(timeout=20) and done.set())
    t.start()
    assert proxy.triggered.wait(10)
    assert wait_until(lambda: c.connected)
    assert b2.enter(timeout=10)
    assert done.wait(10)
    t.join()
    assert sorted(direct.get_children(path)) == sorted([b1.name, b2.name, "ready"])
    tl = threading.Thread(target=lambda: b1.leave(timeout=20))
    tl.start()
    assert b2.leave(timeout=20)
    tl.join(20)
    assert direct.get_children(path) == []
