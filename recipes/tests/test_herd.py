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
