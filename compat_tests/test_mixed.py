"""Mixed ensembles: Apache ZooKeeper 3.8 and zkpy members in one ensemble.

    pytest compat_tests/test_mixed.py

Each pairing starts real processes (``Ensemble(kinds)``), chooses who leads
first by starting that member with one other (the larger myid wins an
election between equals), runs a write load through members of both kinds
with Kazoo, SIGKILLs the leader, lets the survivors elect, and restarts the
old leader under the new one. What is checked is ZooKeeper's contract: every
acknowledged write is on every member, the session and its ephemeral live
through it, and every member ends with the same tree.

The pairings (myid 3 leads first; after the kill usually myid 2 leads, as
the larger id when both survivors hold the same history):

- ``zkpy-leads-zookeepers``: a zkpy leader with two ZooKeeper followers;
  then a ZooKeeper leader, and the zkpy server rejoins under it.
- ``zookeeper-leads-zkpys``: the reverse; the ZooKeeper server rejoins
  under a zkpy leader.
- ``zkpy-leads-one-of-each`` / ``zookeeper-leads-one-of-each``: 1+2 and 2+1
  with the other kind among the followers; the second leader is of the
  other kind than the first.
- ``...-observer``: a fourth member observes, of the other kind than the
  leader.

Then, each way between the kinds: a SNAP (under a write load) and a TRUNC;
a session hopping between a ZooKeeper and a zkpy follower (REVALIDATE,
SESSIONMOVED, watches, sync); a reconfig that adds a server and removes the
leader; and the rolling migration of a loaded ZooKeeper ensemble to zkpy and
back (``docs/migration.md``). Quorum SASL and TLS: ``test_mixed_security.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import ConnectionLoss

from compat_tests.differential.rawclient import RawClient, RawConnectionLoss
from compat_tests.ensembles import (
    REFERENCE,
    Loader,
    clients,
    view,
    wait_until,
)
from compat_tests.mixed import (
    PY,
    SESSION_TIMEOUT,
    ZK,
    mixed,
    same_everywhere,
    server_log,
    start_led_by,
)
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.storage.formats import decode_txn, files_by_zxid
from zkpy.storage.txnlog import read_log
from zkpy.testing.ensemble import Ensemble, Member

pytestmark = [pytest.mark.reference, REFERENCE]

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
        # Whichever survivor logged more of the stream leads (FastLeaderElection:
        # the highest zxid, then the larger id); under load that varies by run.
        assert new.myid in (1, 2), ens.modes()
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


# --------------------------------------------------------------------------
# the three ways to sync, each way round


#: what each kind logs when it takes a SNAP / a TRUNC from its leader
TOOK_SNAP = {ZK: "Getting a snapshot from leader", PY: "Installed the leader's snapshot"}
TOOK_TRUNC = {ZK: "Truncating log to get in sync with the leader",
              PY: "Truncated the log to"}


@pytest.mark.parametrize("kinds", [
    pytest.param([ZK, ZK, PY], id="zkpy-snaps-zookeeper"),
    pytest.param([PY, PY, ZK], id="zookeeper-snaps-zkpy"),
])
def test_snap_to_the_other_kind(kinds: list[str], connect: Callable[..., KazooClient]) -> None:
    """Member 1 misses more writes than its leader (member 3, the other kind)
    keeps in its log window (zkpy: 500 txns; ZooKeeper: 500 committed, and no
    sync from its txn log files: snapshotSizeFactor=-1): it comes back by
    SNAP, the tree streamed after an empty SNAP packet."""
    with mixed(kinds, zookeeper_properties={"zookeeper.snapshotSizeFactor": "-1"}) as ens:
        start_led_by(ens, 3)
        client = connect(ens.member(3).connect_string)
        client.create("/big", b"")
        for i in range(20):
            client.create("/big/n-%02d" % i, b"x" * 100)
        behind = ens.member(1)
        behind.stop()
        value = b"v" * 1024
        for batch in range(12):
            ops = [client.set_async("/big/n-%02d" % (i % 20), value + b"%d" % batch)
                   for i in range(100)]
            for op in ops:
                op.get(timeout=30)
        client.create("/big/last", b"after the gap")
        log_before = len(server_log(behind))
        # Writes go on while it syncs: the leader's snapshot is fuzzy, and what
        # it forwards may overlap what the snapshot holds.
        load = Loader(connect(ens.member(3).connect_string), "/during")
        load.start()
        behind.start(timeout=60, wait=False)
        ens.wait_for_quorum(60)
        load.stop()
        assert TOOK_SNAP[behind.kind] in server_log(behind)[log_before:], ens.log_tails()
        same_everywhere(connect, ens, "/during", load.names())
        same_everywhere(connect, ens, "/big", set(client.get_children("/big")))
        reader = connect(behind.connect_string)
        assert reader.get("/big/last")[0] == b"after the gap"
        assert reader.get("/big/n-07")[0] == value + b"11"
        # and it goes on from there: a write through it, seen by all
        reader.create("/big/through-the-snapped", b"y")
        same_everywhere(connect, ens, "/big", set(client.get_children("/big")))


def zxid_of(member: Member) -> int:
    """The zxid ``srvr`` reports (the last transaction the member applied)."""
    for line in member.four_letter("srvr").splitlines():
        if line.startswith("Zxid:"):
            return int(line.split(":", 1)[1].strip(), 16)
    raise AssertionError("no Zxid in srvr of member %d" % member.myid)


def logged_paths(member: Member) -> set[str]:
    """Paths of the creates in a member's txn logs (read-only: nothing repaired)."""
    log_dir = member.server.data_dir / "version-2"
    paths = set()
    for _, path in files_by_zxid(str(log_dir), "log"):
        for entry in read_log(path, True):
            hdr, body = decode_txn(entry.data)
            if hdr.type == 1:  # OpCode.create
                paths.add(body.path)
    return paths


@pytest.mark.parametrize("kinds", [
    pytest.param([ZK, PY, ZK], id="zkpy-truncates-zookeeper"),
    pytest.param([PY, ZK, PY], id="zookeeper-truncates-zkpy"),
])
def test_trunc_to_the_other_kind(kinds: list[str], connect: Callable[..., KazooClient]) -> None:
    """The leader (3) logs a proposal nobody else has and dies: the followers
    are paused while it is proposed and killed before they read it (SIGKILL
    drops what waits in their sockets). They come back and elect 2 (the other
    kind); 3 comes back with that uncommitted tail and is told to TRUNC it;
    the write never appears."""
    with mixed(kinds) as ens:
        start_led_by(ens, 3)
        client = connect(ens.connect_string)
        client.create("/t", b"")
        for i in range(5):
            client.create("/t/committed-%d" % i)
        acked = set(client.get_children("/t"))
        old = ens.member(3)
        writer = connect(old.connect_string, randomize_hosts=False)
        followers = [ens.member(1), ens.member(2)]
        for f in followers:
            assert view(connect, f, "/t") == acked
        # Both followers hold all of it (the clients' closeSessions too), so the
        # larger myid wins their election.
        wait_until(lambda: len({zxid_of(m) for m in ens.members}) == 1, 20,
                   "every member at the same zxid")
        for f in followers:
            f.pause()
        writer.create_async("/t/uncommitted")  # never acknowledged: no quorum
        wait_until(lambda: "/t/uncommitted" in logged_paths(old), 20,
                   "the leader to log the proposal")
        old.kill()
        for f in followers:
            f.kill()
        for f in followers:
            f.start(timeout=60, wait=False)
        new = ens.wait_for_quorum(60)
        assert new.myid == 2, ens.modes()
        log_before = len(server_log(old))
        old.start(timeout=60, wait=False)
        ens.wait_for_quorum(60)
        assert TOOK_TRUNC[old.kind] in server_log(old)[log_before:], ens.log_tails()
        same_everywhere(connect, ens, "/t", acked)
        assert not any(connect(m.connect_string).exists("/t/uncommitted") for m in ens.members)
        client.create("/t/after")
        same_everywhere(connect, ens, "/t", acked | {"after"})


# --------------------------------------------------------------------------
# a session moving between kinds

CHANGED = 3  # EventType.NodeDataChanged
OPEN_ACL = [S.ACL(31, S.Id("world", "anyone"))]


def move(raw: RawClient, target: Member) -> None:
    """Reconnect the raw client's session to *target*, re-registering its data
    watch on /s as the Java client does after a reconnect (SetWatches)."""
    raw.close_socket()
    raw.host, raw.port = target.host, target.port
    deadline = time.monotonic() + 20
    while True:
        try:
            raw._connect((raw.session_id, raw.passwd))
            break
        except (RawConnectionLoss, OSError):
            # A member that has not seen the client's last zxid yet turns it away
            # ("client must try another server"): it tries again.
            assert time.monotonic() < deadline, "member %d never took the session" % target.myid
            time.sleep(0.05)
    err, _ = raw.call(Op.setWatches, S.SetWatches(raw.last_zxid, ["/s"], [], []), xid=-8)
    assert err == 0


@pytest.mark.parametrize("leader_kind", [ZK, PY])
def test_a_session_moves_between_kinds(leader_kind: str,
                                       connect: Callable[..., KazooClient]) -> None:
    """One session hops ZooKeeper follower -> zkpy follower -> back -> again,
    under a leader of either kind. After each hop its ephemeral is there, its
    writes go through (the follower revalidated the session with the leader,
    which now routes it there: no SESSIONMOVED), its watch fires, and a sync
    through that member shows the latest write."""
    with mixed([ZK, PY, leader_kind]) as ens:
        start_led_by(ens, 3)
        writer = connect(ens.member(3).connect_string)
        writer.create("/s", b"0")
        home = ens.member(1)
        raw = RawClient(home.host, home.port, timeout_ms=int(SESSION_TIMEOUT * 1000))
        err, _ = raw.call(Op.create, S.CreateRequest("/s/eph", b"", OPEN_ACL, 1))  # ephemeral
        assert err == 0
        assert raw.call(Op.getData, S.GetDataRequest("/s", True))[0] == 0
        for hop, target in enumerate([ens.member(2), ens.member(1), ens.member(2)], 1):
            move(raw, target)
            err, _ = raw.call(Op.setData, S.SetDataRequest("/s/eph", b"hop %d" % hop, -1))
            assert err == 0, "write after moving to member %d (%s): error %d" % (
                target.myid, target.kind, err)
            writer.set("/s", b"%d" % hop)
            err, _ = raw.call(Op.sync, S.SyncRequest("/s"))
            assert err == 0
            err, body = raw.call(Op.getData, S.GetDataRequest("/s", True))
            assert err == 0 and body[4:4 + len(b"%d" % hop)] == b"%d" % hop
            assert raw.events.count((CHANGED, "/s")) == hop, raw.events
        assert writer.get("/s/eph")[0] == b"hop 3"
        assert raw.close_session() == 0
        wait_until(lambda: writer.exists("/s/eph") is None, 10, "the ephemeral to go")


# --------------------------------------------------------------------------
# rolling migration, there and back


class VersionWatcher(threading.Thread):
    """Reads /v again and again through a client on every member and fails if
    a read ever shows an older version than one seen before (state going
    backwards), while another client keeps setting it."""

    def __init__(self, client: KazooClient) -> None:
        super().__init__(name="version-watcher", daemon=True)
        self.client, self.seen, self.reads = client, -1, 0
        self.backwards: list[tuple[int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                _, stat = self.client.get("/v")
            except Exception:
                time.sleep(0.05)
                continue
            if stat.version < self.seen:
                self.backwards.append((self.seen, stat.version))
            self.seen = max(self.seen, stat.version)
            self.reads += 1
            self.halt.wait(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def roll(ens: Ensemble, kind: str, loads: list[Loader], owner: KazooClient,
         connect: Callable[..., KazooClient]) -> None:
    """Restart every member as *kind*, one at a time, followers first and the
    leader last, each only once the ensemble is whole again and the restarted
    member holds every write acknowledged so far."""
    order = sorted(ens.members, key=lambda m: m.mode() == "leader")
    for m in order:
        before = [len(ld.acked) for ld in loads]
        m.become(kind, wait=False)
        ens.wait_for_quorum(60)
        wait_until(lambda b=before: all(len(ld.acked) > n + 10 for ld, n in zip(loads, b, strict=True)),
                   60, "writes after member %d became %s\n%s" % (m.myid, kind, ens.log_tails()))
        for i, load in enumerate(loads, 1):
            missing = load.names() - view(connect, m, "/load-%d" % i)
            assert not missing, "member %d lost writes after becoming %s" % (m.myid, kind)
        assert owner.exists("/eph") is not None


def test_rolling_migration_from_zookeeper_to_zkpy_and_back(
        connect: Callable[..., KazooClient]) -> None:
    """A loaded 3-server ZooKeeper ensemble becomes all zkpy, one member at a
    time on the same dataDir and myid, and then all ZooKeeper again: no
    acknowledged write is lost, the session (and its ephemeral) never
    expires, and no client read goes backwards."""
    with mixed([ZK, ZK, ZK]) as ens:
        ens.start(60)
        owner = connect(ens.connect_string, timeout=30.0)
        states: list[str] = []
        owner.add_listener(states.append)
        session = owner.client_id
        owner.create("/eph", b"mine", ephemeral=True)
        owner.create("/v", b"0")
        loads = [Loader(connect(ens.connect_string), "/load-%d" % i) for i in (1, 2)]
        watcher = VersionWatcher(connect(ens.connect_string))
        setter = Setter(owner)
        for t in (*loads, watcher, setter):
            t.start()
        wait_until(lambda: all(len(ld.acked) >= 20 for ld in loads), 30, "writes to start")

        roll(ens, PY, loads, owner, connect)
        assert [m.kind for m in ens.members] == [PY, PY, PY]
        roll(ens, ZK, loads, owner, connect)
        assert [m.kind for m in ens.members] == [ZK, ZK, ZK]

        for t in (*loads, setter):
            t.stop()
        watcher.stop()
        assert owner.client_id == session
        assert KazooState.LOST not in states
        assert owner.exists("/eph") is not None
        assert watcher.reads > 100 and not watcher.backwards, watcher.backwards[:5]
        for i, load in enumerate(loads, 1):
            same_everywhere(connect, ens, "/load-%d" % i, load.names())


class Setter(threading.Thread):
    """Keeps setting /v (its version is what VersionWatcher follows)."""

    def __init__(self, client: KazooClient) -> None:
        super().__init__(name="setter", daemon=True)
        self.client = client
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            n += 1
            try:
                self.client.set("/v", b"%d" % n)
            except Exception:
                time.sleep(0.05)
            self.halt.wait(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


# --------------------------------------------------------------------------
# reconfig in a mixed ensemble

SUPER = {"zookeeper.DigestAuthenticationProvider.superDigest":
         "super:D/InIHSb7yEEbrWz8b9l71RjZJU="}  # password "test", as in Kazoo's tests


def new_leader(ens: Ensemble) -> int | None:
    leader = ens.leader()
    return leader.myid if leader is not None else None


def config_of(connect: Callable[..., KazooClient], member: Member | None) -> bytes:
    assert member is not None
    client = connect(member.connect_string)
    client.sync("/zookeeper/config")
    return client.get("/zookeeper/config")[0]


def voters_in(config: bytes) -> set[int]:
    return {int(line.split("=")[0][len("server."):]) for line in config.decode().splitlines()
            if line.startswith("server.") and ":participant" in line}


@pytest.mark.parametrize("kinds", [
    pytest.param([ZK, PY, PY, ZK], id="zkpy-leader-removed"),
    pytest.param([PY, ZK, ZK, PY], id="zookeeper-leader-removed"),
])
def test_reconfig_adds_a_server_then_removes_the_leader(
        kinds: list[str], connect: Callable[..., KazooClient]) -> None:
    """Server 4 (the leader's other kind) follows without a vote, a reconfig adds
    it; then a reconfig removes the leader (3): it names a successor and every
    server, of either kind, goes to it. Writes go on through both changes and
    none that was acknowledged is lost; every member ends with the same
    membership."""
    with mixed(kinds, properties=SUPER, settings={"reconfigEnabled": "true"}) as ens:
        joiner = ens.member(4)
        line = "server.4=127.0.0.1:%d:%d:participant;127.0.0.1:%d" % (
            joiner.quorum_port, joiner.election_port, joiner.port)
        for m in ens.members[:3]:
            m.server.settings.pop("server.4")
        start_led_by(ens, 3, only=(1, 2, 3))
        admin = connect(ens.member(1).connect_string, auth_data=[("digest", "super:test")])
        load = Loader(connect(",".join(m.connect_string for m in ens.members[:3])), "/load")
        load.start()
        wait_until(lambda: len(load.acked) >= 20, 30, "writes before the reconfig")

        joiner.start(timeout=60, wait=False)
        wait_until(lambda: joiner.mode() == "follower", 60,
                   "server 4 to follow without a vote\n%s" % ens.log_tails())
        grown, _ = admin.reconfig(joining=line, leaving=None, new_members=None)
        assert voters_in(grown) == {1, 2, 3, 4}
        before = len(load.acked)
        wait_until(lambda: len(load.acked) > before + 20, 30, "writes after growing")

        try:
            admin.reconfig(joining=None, leaving="3", new_members=None)
        except ConnectionLoss:
            pass  # every member goes to the new leader: the answer may be lost with it
        wait_until(lambda: (new_leader(ens) not in (None, 3)
                            and ens.member(3).mode() == "follower"), 60,
                   "a new leader, with 3 following it\n%s" % ens.log_tails())
        shrunk = config_of(connect, ens.leader())
        assert voters_in(shrunk) == {1, 2, 4}
        before = len(load.acked)
        wait_until(lambda: len(load.acked) > before + 20, 60,
                   "writes after the leader left\n%s" % ens.log_tails())
        load.stop()
        for m in ens.members:
            assert config_of(connect, m) == shrunk, "member %d" % m.myid
        same_everywhere(connect, ens, "/load", load.names())
