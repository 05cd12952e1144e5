"""linearizableReads on real processes: a zkpy ensemble, and mixed ensembles.

    pytest compat_tests/test_linear_reads.py

- Three zkpy members with ``linearizableReads=true`` in zoo.cfg: a read on
  any member, right after a write through another member was acknowledged,
  returns that write (without the setting a follower may still be behind).
- The leader's process is stopped (SIGSTOP) with a client's read in its
  socket; the others elect a new leader and take a write; the old leader is
  continued. It believes it still leads, but its read waits for a quorum that
  never answers: the client gets the new value or loses the connection,
  never the old value. (The simulation, ``tests/test_linear_reads.py``, shows
  the stale answer without the setting; here the order in which the old
  leader handles its client and its timers after SIGCONT is the kernel's.)
- Mixed ensembles (``-Dzookeeper.linearizableReads=true`` on the zkpy
  members): with a zkpy leader, Apache ZooKeeper's followers echo the PINGs
  that carry the confirmation rounds, so reads through the zkpy leader are
  answered with the last write, and the ZooKeeper followers answer their own
  reads as ZooKeeper does (from their tree, which may be behind); with an
  Apache ZooKeeper leader, it answers a zkpy follower's read points as it
  answers any learner's sync, so the zkpy followers read the last write.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from compat_tests.differential.rawclient import RawClient, RawConnectionLoss
from compat_tests.ensembles import INSTALL, REASON, clients, started, wait_until
from compat_tests.test_mixed import PY, ZK, mixed, start_led_by
from zkpy.jute import schema as S
from zkpy.jute.codec import decode
from zkpy.jute.protocol import Op
from zkpy.testing.ensemble import Ensemble, Member

SESSION_TIMEOUT = 30.0
LINEAR = {"linearizableReads": "true"}


@pytest.fixture
def ensemble(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    yield from started(request, Ensemble("zkpy", 3, LINEAR))


@pytest.fixture
def connect() -> Iterator[Callable[..., KazooClient]]:
    yield from clients(SESSION_TIMEOUT)


def on(connect: Callable[..., KazooClient], member: Member) -> KazooClient:
    return connect(member.connect_string, randomize_hosts=False)


def test_every_member_reads_the_write_just_acknowledged(ensemble: Ensemble,
                                                         connect: Callable[..., KazooClient]
                                                         ) -> None:
    ens = ensemble
    per_member = [on(connect, m) for m in ens.members]
    per_member[0].create("/x", b"0")
    for i in range(1, 61):
        writer = per_member[i % 3]
        writer.set("/x", b"%d" % i)
        # Both other members at once: a follower that lags must wait, not answer.
        pending = [c.get_async("/x") for c in per_member if c is not writer]
        assert [p.get(timeout=10)[0] for p in pending] == [b"%d" % i] * 2, i


def _get(raw: RawClient, path: str) -> bytes | None:
    err, body = raw.call(Op.getData, S.GetDataRequest(path, False))
    assert err == 0, err
    data: bytes | None = decode(S.GetDataResponse, body, 0)[0].data
    return data


def test_a_leader_deposed_while_stopped_never_answers_an_old_value(
        ensemble: Ensemble, connect: Callable[..., KazooClient]) -> None:
    answer = deposed_leader_read(ensemble, connect)
    # Without the setting this is b"old" (three runs out of three here).
    assert answer in (b"new", "connection lost"), answer
    ensemble.wait_for_quorum(30)


def deposed_leader_read(ens: Ensemble, connect: Callable[..., KazooClient]) -> object:
    """Stop the leader, let the others elect and take a write, put a read in the
    old leader's socket, continue it: what does the read answer?"""
    old = ens.leader()
    assert old is not None
    survivors = [m for m in ens.members if m is not old]
    on(connect, survivors[0]).create("/x", b"old")
    raw = RawClient("127.0.0.1", old.port, timeout_ms=int(SESSION_TIMEOUT * 1000))
    assert _get(raw, "/x") == b"old"
    old.pause()
    try:
        wait_until(lambda: any(m.mode() == "leader" for m in survivors), 30,
                   "a new leader among the others")
        on(connect, survivors[0]).set("/x", b"new")  # acknowledged by the new quorum
        raw._send(struct.pack(">ii", 99, Op.getData) + S.GetDataRequest("/x", False).encode())
    finally:
        old.resume()
    try:
        frame = raw._read_frame()
    except RawConnectionLoss:
        return "connection lost"
    xid, _, err = struct.unpack_from(">iqi", frame, 0)
    assert (xid, err) == (99, 0)
    data: bytes | None = decode(S.GetDataResponse, frame, 16)[0].data
    return data


# -- mixed ensembles ------------------------------------------------------------------------

MIXED = [
    pytest.param([ZK, ZK, PY], 3, id="zkpy-leads-zookeepers"),
    pytest.param([PY, PY, ZK], 3, id="zookeeper-leads-zkpys"),
]


@pytest.mark.reference
@pytest.mark.skipif(INSTALL is None, reason="Apache ZooKeeper unavailable: %s" % REASON)
@pytest.mark.parametrize("kinds,leader", MIXED)
def test_reads_in_a_mixed_ensemble(kinds: list[str], leader: int,
                                   connect: Callable[..., KazooClient]) -> None:
    # The same -D for every member, as an operator would set it: Apache ZooKeeper
    # reads no such property.
    with mixed(kinds, properties={"zookeeper.linearizableReads": "true"}) as ens:
        start_led_by(ens, leader)
        per_member = [(m, on(connect, m)) for m in ens.members]
        per_member[0][1].create("/x", b"0")
        for i in range(1, 31):
            per_member[i % 3][1].set("/x", b"%d" % i)
            for m, c in per_member:
                data = c.get("/x")[0]
                # A ZooKeeper member answers from its own tree: maybe behind.
                assert data == b"%d" % i if m.kind == PY else int(data) <= i
        for m in ens.members:
            if m.kind == PY:  # its reads went through read points
                stats = dict(line.split("\t", 1) for line in
                             m.four_letter("mntr").splitlines() if "\t" in line)
                assert int(stats["zk_linear_reads"]) >= 30, stats
                if m.myid == leader:
                    assert int(stats["zk_linear_read_rounds"]) >= 1, stats
