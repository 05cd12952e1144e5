"""What the real-process ensemble tests share: which kinds run, how clients
retry, waiting for a condition, and stopping the clients a test made."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import pytest
from kazoo.client import KazooClient

from zkpy.testing.ensemble import Ensemble
from zkpy.testing.launchers import find_apache_zookeeper

INSTALL, REASON = find_apache_zookeeper()

#: for tests that need the reference: skipped, saying why, when it is absent
REFERENCE = pytest.mark.skipif(INSTALL is None,
                               reason="Apache ZooKeeper unavailable: %s" % REASON)
#: zkpy, and Apache ZooKeeper as the reference
KINDS = ["zkpy", pytest.param("zookeeper", marks=[pytest.mark.reference, REFERENCE])]

#: reconnect promptly to another member (the default back-off reaches seconds)
RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.2}


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
