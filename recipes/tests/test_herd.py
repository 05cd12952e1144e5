"""The herd effect, counted: watch notifications for one release with N
parked waiters.  NaiveLock notifies every waiter; FairLock exactly one."""

from __future__ import annotations

import pytest

from recipes.herd import measure_release


@pytest.mark.parametrize("n", [2, 8, 32])
def test_notifications_per_release(server, n):
    naive = measure_release(server.connect_string, "naive", n)
    fair = measure_release(server.connect_string, "fair", n)
    assert (naive, fair) == (n, 1)


def test_fair_lock_drain_costs_one_notification_per_release(server, make_client, path):
    """16 waiters take the lock one after the other: 16 releases of a
    contended lock, 16 notifications in all (each waiter woken once)."""
    import threading

    from recipes import FairLock

    from .conftest import wait_until

    n = 16
    holder = FairLock(make_client(), path, "h")
    holder.acquire()
    waiters = [FairLock(make_client(), path, "w%d" % i) for i in range(n)]
    order = []

    def run(i):
        with waiters[i]:
            order.append(i)

    threads = []
    for i in range(n):
        t = threading.Thread(target=run, args=(i,))
        t.start()
        threads.append(t)
        assert wait_until(lambda w=waiters[i]: w.waiting)
    holder.release()
    for t in threads:
        t.join(30)
    assert order == list(range(n))
    assert [w.notifications for w in waiters] == [1] * n
