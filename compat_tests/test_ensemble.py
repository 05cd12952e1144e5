"""Fault tests of a real 3-server ensemble, zkpy beside Apache ZooKeeper.

    pytest compat_tests/test_ensemble.py                 # both kinds
    pytest compat_tests/test_ensemble.py -k zookeeper    # the reference only

Every test starts its own ensemble (``zkpy.testing.ensemble.Ensemble``,
tickTime=500, so syncLimit is 2.5 s), drives it with Kazoo clients and
signals (SIGKILL, SIGSTOP/SIGCONT, SIGTERM), and stops it itself; a failing
test keeps the members' logs (the path is printed).  What is checked is
ZooKeeper's contract, not timing: acknowledged writes survive leader loss,
a paused follower catches up, no writes without a majority, a client never
reads older state after moving to another member, and watches move with
the session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient, KazooState

from compat_tests.differential.rawclient import RawClient, RawConnectionLoss
from compat_tests.ensembles import (
    FAILED_WRITE,
    KINDS,
    Loader,
    clients,
    drop_connection,
    on_member,
    started,
    view,
    wait_until,
    write,
)
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.testing.ensemble import Ensemble

SESSION_TIMEOUT = 10.0


@pytest.fixture(params=KINDS)
def ensemble(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    yield from started(request, Ensemble(request.param, 3))


@pytest.fixture
def connect() -> Iterator[Callable[..., KazooClient]]:
    """``connect(hosts, **kw)``: a started Kazoo client, stopped at teardown."""
    yield from clients(SESSION_TIMEOUT)


# --------------------------------------------------------------------------
# (a) leader loss


def test_leader_kill_keeps_acknowledged_writes_and_session(ensemble, connect):
    ens = ensemble
    client = connect(ens.connect_string)
    states: list[str] = []
    client.add_listener(states.append)
    session = client.client_id
    eph = client.create("/eph", b"mine", ephemeral=True)
    load = Loader(client)
    load.start()
    wait_until(lambda: len(load.acked) >= 50, 20, "50 writes before the kill")

    old = ens.leader()
    assert old is not None
    killed_at = time.monotonic()
    old.kill()
    new = ens.wait_for_quorum(30)
    assert new is not old
    wait_until(lambda: load.acks_since(killed_at) >= 30, 30, "writes after the new leader")
    load.stop()
    acked = load.names()

    assert client.client_id == session
    assert KazooState.LOST not in states
    assert client.exists(eph) is not None
    for m in ens.members:
        if m is not old:
            assert acked <= view(connect, m, "/load"), "member %d lost writes" % m.myid
    old.start(timeout=60)
    ens.wait_for_quorum(30)
    assert acked <= view(connect, old, "/load"), "the old leader lost writes"
    assert client.exists(eph) is not None


# --------------------------------------------------------------------------
# (b) a paused follower


def test_paused_follower_catches_up_while_writes_go_on(ensemble, connect):
    ens = ensemble
    client = connect(ens.connect_string)
    load = Loader(client)
    load.start()
    wait_until(lambda: len(load.acked) >= 20, 20, "writes before the pause")
    current = on_member(ens, client)
    target = next(m for m in ens.followers() if m is not current)

    paused_at = time.monotonic()
    target.pause()
    time.sleep(3.0)  # longer than syncLimit: the leader may drop it
    resumed_at = time.monotonic()
    target.resume()
    ens.wait_for_quorum(30)
    wait_until(lambda: load.acks_since(resumed_at) >= 20, 20, "writes after the resume")
    load.stop()

    assert load.acks_since(paused_at) - load.acks_since(resumed_at) >= 10
    assert load.max_gap(paused_at, resumed_at) < 2.0, "writes stalled while a follower slept"
    leader = ens.leader()
    assert leader is not None
    on_leader = view(connect, leader, "/load")
    assert load.names() <= on_leader
    assert view(connect, target, "/load") == on_leader


# --------------------------------------------------------------------------
# (c) minority and majority loss


def test_writes_need_a_majority(ensemble, connect):
    ens = ensemble
    client = connect(ens.connect_string)
    client.ensure_path("/c")
    acked = []
    for i in range(5):
        write(client, "/c/before-%d" % i)
        acked.append("before-%d" % i)

    leader = ens.leader()
    assert leader is not None
    first, remaining = [m for m in ens.members if m is not leader]
    first.stop()
    for i in range(5):
        write(client, "/c/minority-%d" % i)
        acked.append("minority-%d" % i)

    leader.stop()  # two of three down
    deadline = time.monotonic() + 3.0
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        with pytest.raises(FAILED_WRITE):
            client.create_async("/c/stalled-%d" % attempt).get(timeout=1.0)

    first.start(timeout=60, wait=False)
    leader.start(timeout=60, wait=False)
    ens.wait_for_quorum(60)
    for i in range(5):
        write(client, "/c/after-%d" % i)
        acked.append("after-%d" % i)
    for m in ens.members:
        assert set(acked) <= view(connect, m, "/c"), "member %d lost writes" % m.myid


# --------------------------------------------------------------------------
# (d) monotonic reads across members


def test_moving_client_never_reads_older_state(ensemble, connect):
    ens = ensemble
    writer = connect(ens.connect_string)
    writer.create("/d", b"0")
    halt = threading.Event()

    def keep_writing() -> None:
        n = 0
        while not halt.is_set():
            n += 1
            try:
                writer.set_async("/d", b"%d" % n).get(timeout=5)
            except Exception:
                time.sleep(0.02)

    thread = threading.Thread(target=keep_writing, daemon=True)
    thread.start()
    reader = connect(ens.members[0].connect_string, randomize_hosts=False)
    reader.create("/own", b"0")
    seen_version, own = -1, None
    try:
        for i in range(6):
            current = on_member(ens, reader)
            target = [m for m in ens.members if m is not current][i % 2]
            lagging = i % 2 == 0 and target.mode() == "follower"
            if lagging:
                target.pause()  # shorter than syncLimit: it stays a follower, behind
            for _ in range(20):
                _, stat = reader.get("/d")
                assert stat.version >= seen_version
                seen_version = stat.version
                time.sleep(0.03)
            own = reader.set("/own", b"%d" % i)
            reader.set_hosts(target.connect_string)
            drop_connection(reader)
            if lagging:
                # the handshake waits in the sleeping member's socket; on SIGCONT it
                # races the proposals it missed: it must refuse or be up to date
                time.sleep(0.3)
                target.resume()
            wait_until(lambda t=target: on_member(ens, reader) is t, 20,
                       "the reader to land on member %d" % target.myid)
            data, stat = reader.get("/d")
            assert stat.version >= seen_version, "member %d served older /d" % target.myid
            seen_version = stat.version
            data, stat = reader.get("/own")
            assert (data, stat.mzxid) == (b"%d" % i, own.mzxid), \
                "member %d did not show the reader its own write" % target.myid
    finally:
        halt.set()
        thread.join(10)


# --------------------------------------------------------------------------
# (e) watches follow the session
#
# Kazoo fires its one-shot watches with EventType.NONE on any disconnection
# and never sends SetWatches, so the session is moved here with the raw
# client, which re-registers its watches the way the Java client does.

CREATED, CHANGED, CHILD = 1, 3, 4


def test_watches_fire_after_the_client_moves(ensemble, connect):
    ens = ensemble
    leader = ens.leader()
    assert leader is not None
    home = ens.followers()[0]
    setup = connect(leader.connect_string)
    for path in ("/w1", "/w2"):
        setup.create(path, b"0")

    raw = RawClient(home.host, home.port, timeout_ms=int(SESSION_TIMEOUT * 1000))
    assert raw.call(Op.getData, S.GetDataRequest("/w1", True))[0] == 0
    assert raw.call(Op.getData, S.GetDataRequest("/w2", True))[0] == 0
    assert raw.call(Op.getChildren, S.GetChildrenRequest("/w1", True))[0] == 0
    assert raw.call(Op.exists, S.ExistsRequest("/w3", True))[0] == -101  # NONODE
    seen_zxid = raw.last_zxid

    home.kill()
    raw.close_socket()
    setup.set("/w1", b"changed while the session had no connection")
    target = next(m for m in ens.members if m is not home)
    deadline = time.monotonic() + 20
    while True:
        try:
            raw.host, raw.port = target.host, target.port
            raw._connect((raw.session_id, raw.passwd))
            break
        except (RawConnectionLoss, OSError):
            assert time.monotonic() < deadline, "member %d never took the session" % target.myid
            time.sleep(0.1)
    err, _ = raw.call(Op.setWatches, S.SetWatches(seen_zxid, ["/w1", "/w2"], ["/w3"], ["/w1"]),
                      xid=-8)
    assert err == 0
    setup.set("/w2", b"changed after the move")
    setup.create("/w1/child")
    setup.create("/w3")
    wanted = {(CHANGED, "/w1"), (CHANGED, "/w2"), (CHILD, "/w1"), (CREATED, "/w3")}
    deadline = time.monotonic() + 15
    while not wanted <= set(raw.events) and time.monotonic() < deadline:
        raw.ping()  # reads the notifications that arrived meanwhile
        time.sleep(0.05)
    assert sorted(raw.events) == sorted(wanted), "a watch fired twice or for nothing"
    raw.close_session()
