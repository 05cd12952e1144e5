"""Mixed ensembles: Apache ZooKeeper 3.8 and zkpy members in one ensemble.

    pytest compat_tests/test_mixed.py

Each pairing starts real processes (``Ensemble(kinds)``), chooses who leads
first by starting that member with one other (the larger myid wins an
election between equals), runs a write load through members of both kinds
with Kazoo, SIGKILLs the leader, lets the survivors elect, and restarts the
old leader under the new one. What is checked is ZooKeeper's contract: every
acknowledged write is on every member, the session and its ephemeral live
through it, and every member ends with the same tree.

The pairings (myid 3 leads first; after the kill myid 2 leads):

- ``zkpy-leads-zookeepers``: a zkpy leader with two ZooKeeper followers;
  then a ZooKeeper leader, and the zkpy server rejoins under it.
- ``zookeeper-leads-zkpys``: the reverse; the ZooKeeper server rejoins
  under a zkpy leader.
- ``zkpy-leads-one-of-each`` / ``zookeeper-leads-one-of-each``: 1+2 and 2+1
  with the other kind among the followers; the second leader is of the
  other kind than the first.
- ``...-observer``: a fourth member observes, of the other kind than the
  leader.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import pytest
from kazoo.client import KazooClient, KazooState

from compat_tests.ensembles import (
    INSTALL,
    REASON,
    Loader,
    clients,
    view,
    wait_until,
)
from zkpy.testing.ensemble import Ensemble

pytestmark = [pytest.mark.reference,
              pytest.mark.skipif(INSTALL is None,
                                 reason="Apache ZooKeeper unavailable: %s" % REASON)]

SESSION_TIMEOUT = 10.0
ZK, PY = "zookeeper", "zkpy"
#: ZooKeeper logs at INFO: a failing pairing's log tail says what it was doing
OPTIONS = {ZK: {"log_level": "info"}}

PAIRINGS = [
    pytest.param([ZK, ZK, PY], (), id="zkpy-leads-zookeepers"),
    pytest.param([PY, PY, ZK], (), id="zookeeper-leads-zkpys"),
    pytest.param([ZK, PY, PY], (), id="zkpy-leads-one-of-each"),
    pytest.param([PY, ZK, ZK], (), id="zookeeper-leads-one-of-each"),
    pytest.param([ZK, PY, PY, ZK], (4,), id="zkpy-leads-zookeeper-observer"),
    pytest.param([PY, ZK, ZK, PY], (4,), id="zookeeper-leads-zkpy-observer"),
]


@pytest.fixture
def connect() -> Iterator[Callable[..., KazooClient]]:
    yield from clients(SESSION_TIMEOUT)


def start_led_by(ens: Ensemble, leader: int, timeout: float = 60) -> None:
    """Start ``leader`` with the smallest other voter first (it wins their
    election: same zxid, larger myid), then everyone else."""
    first = [leader, min(m.myid for m in ens.members if m.myid != leader and not m.observer)]
    for myid in first:
        ens.member(myid).start(timeout=timeout, wait=False)
    wait_until(lambda: ens.member(leader).mode() == "leader", timeout,
               "member %d to lead\n%s" % (leader, ens.log_tails()))
    ens.start(timeout)
    got = ens.leader()
    assert got is not None and got.myid == leader, ens.modes()


def mixed(kinds: Sequence[str], observers: Sequence[int] = (), **kw: object) -> Ensemble:
    """Use in a ``with`` block: a failing test keeps the members' logs."""
    return Ensemble(kinds, observers=observers, kind_options=OPTIONS, **kw)  # type: ignore[arg-type]


def same_everywhere(connect: Callable[..., KazooClient], ens: Ensemble, path: str,
                    acked: set[str]) -> None:
    """Every running member holds every acknowledged write, and the same children."""
    seen = {}
    for m in ens.members:
        if m.running:
            seen[m.myid] = view(connect, m, path)
            missing = acked - seen[m.myid]
            assert not missing, "member %d (%s) lost %d acknowledged writes, e.g. %s" % (
                m.myid, m.kind, len(missing), sorted(missing)[:3])
    first = next(iter(seen.values()))
    assert all(s == first for s in seen.values()), {k: len(v) for k, v in seen.items()}


@pytest.mark.parametrize("kinds,observers", PAIRINGS)
def test_leader_kill_under_load(kinds: list[str], observers: tuple[int, ...],
                                connect: Callable[..., KazooClient]) -> None:
    with mixed(kinds, observers) as ens:
        start_led_by(ens, 3)
        owner = connect(ens.connect_string)
        states: list[str] = []
        owner.add_listener(states.append)
        session = owner.client_id
        eph = owner.create("/eph", b"mine", ephemeral=True)
        # One load through each survivor-to-be (both kinds forward writes), one
        # through the leader; all of them see the kill.
        loads = [Loader(connect(ens.member(i).connect_string), "/load-%d" % i)
                 for i in (1, 2, 3)]
        for load in loads:
            load.start()
        wait_until(lambda: all(len(ld.acked) >= 30 for ld in loads), 30,
                   "30 writes through every member\n%s" % ens.log_tails())

        old = ens.member(3)
        killed_at = time.monotonic()
        old.kill()
        new = ens.wait_for_quorum(60)
        assert new.myid == 2, ens.modes()
        wait_until(lambda: all(ld.acks_since(killed_at) >= 20 for ld in loads[:2]), 60,
                   "writes after the kill\n%s" % ens.log_tails())
        old.start(timeout=60, wait=False)
        ens.wait_for_quorum(60)
        wait_until(lambda: all(ld.acks_since(killed_at) >= 40 for ld in loads), 60,
                   "writes through the restarted member\n%s" % ens.log_tails())
        for load in loads:
            load.stop()

        assert owner.client_id == session
        assert KazooState.LOST not in states
        assert owner.exists(eph) is not None
        for i, load in enumerate(loads, 1):
            same_everywhere(connect, ens, "/load-%d" % i, load.names())
