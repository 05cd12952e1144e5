"""Dynamic reconfiguration and observers on real ensembles, zkpy beside Apache ZooKeeper.

    pytest compat_tests/test_reconfig.py                 # both kinds
    pytest compat_tests/test_reconfig.py -k zookeeper    # the reference only

Each test starts its own ensemble (``zkpy.testing.ensemble.Ensemble``,
``reconfigEnabled=true``, the super user's digest as in Kazoo's harness) and
checks ZooKeeper's contract, not timing: a reconfig changes who votes (shown
by which failures the ensemble then survives), no acknowledged write is lost
while the membership changes under a write load, the membership survives a
restart, and an observer serves without a vote.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NewConfigNoQuorumError, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError

from compat_tests.ensembles import KINDS, RETRY, stop_all, wait_until
from zkpy.testing.ensemble import Ensemble, Member

SUPER = {"zookeeper.DigestAuthenticationProvider.superDigest":
         "super:D/InIHSb7yEEbrWz8b9l71RjZJU="}  # the password is "test", as in Kazoo's tests
FAILED_WRITE = (KazooException, KazooTimeoutError)


def joining_line(m: Member, role: str = "participant") -> str:
    return "server.%d=127.0.0.1:%d:%d:%s;127.0.0.1:%d" % (
        m.myid, m.quorum_port, m.election_port, role, m.port)


def members_of(config: bytes) -> dict[int, str]:
    """``{id: role}`` of a /zookeeper/config payload."""
    out = {}
    for line in config.decode().splitlines():
        if line.startswith("server."):
            key, _, value = line.partition("=")
            out[int(key[len("server."):])] = value.split(";")[0].split(":")[3]
    return out


def version_of(config: bytes) -> int:
    return int(config.decode().splitlines()[-1].split("=")[1], 16)


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> None:
    wait_until(check, timeout, what)


class Writer(threading.Thread):
    """Sequential creates of /load/N; remembers which ones were acknowledged."""

    def __init__(self, hosts: str) -> None:
        super().__init__(daemon=True)
        self.client = KazooClient(hosts=hosts, timeout=10.0, connection_retry=dict(RETRY))
        self.client.start(timeout=30)
        self.client.ensure_path("/load")
        self.acked: list[int] = []
        self.failed = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                self.client.create("/load/%d" % n)
                self.acked.append(n)
            except NodeExistsError:
                self.acked.append(n)  # an earlier attempt whose answer was lost
            except FAILED_WRITE:
                self.failed += 1
                time.sleep(0.05)

    def finish(self) -> None:
        self.stopping.set()
        self.join(30)
        self.client.stop()
        self.client.close()


@pytest.fixture
def clients() -> Iterator[list[KazooClient]]:
    made: list[KazooClient] = []
    yield made
    stop_all(made)


def connect(made: list[KazooClient], hosts: str, **kw: object) -> KazooClient:
    c = KazooClient(hosts=hosts, timeout=10.0, connection_retry=dict(RETRY), **kw)
    c.start(timeout=30)
    made.append(c)
    return c


def reconfig(admin: KazooClient, **kw: object) -> bytes:
    """A reconfig, retried while the new voters are still syncing (NEWCONFIGNOQUORUM)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            data, _ = admin.reconfig(**kw)
            return data
        except NewConfigNoQuorumError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def config_on(m: Member, made: list[KazooClient]) -> bytes:
    c = connect(made, m.connect_string)
    c.sync("/")
    data, _ = c.get("/zookeeper/config")
    c.stop()
    return data


@pytest.mark.parametrize("kind", KINDS)
def test_grow_to_five_and_shrink_back_under_write_load(kind: str,
                                                         clients: list[KazooClient]) -> None:
    ens = Ensemble(kind, 5, {"reconfigEnabled": "true"},
                   server_options={"system_properties": SUPER})
    ok = False
    try:
        for m in ens.members[:3]:  # the first three know only each other
            m.server.settings.pop("server.4")
            m.server.settings.pop("server.5")
            m.start(wait=False)
        ens.wait_for_quorum(60)
        admin = connect(clients, ",".join(m.connect_string for m in ens.members[:3]),
                        auth_data=[("digest", "super:test")])
        assert set(members_of(admin.get("/zookeeper/config")[0])) == {1, 2, 3}
        writer = Writer(ens.connect_string)
        writer.start()

        # 4 and 5 start knowing all five; without a vote they follow the leader.
        for m in ens.members[3:]:
            m.start(wait=False)
        wait_for("4 and 5 to follow", lambda: all(m.mode() == "follower"
                                                  for m in ens.members[3:]))
        grown = reconfig(admin, joining=",".join(joining_line(m) for m in ens.members[3:]),
                         leaving=None, new_members=None)
        assert members_of(grown) == {i: "participant" for i in range(1, 6)}
        time.sleep(1)

        # Five voters survive losing two of the original three (three of five remain).
        for m in ens.members[:2]:
            m.kill()
        ens.wait_for_quorum(60)
        acked_then = len(writer.acked)
        wait_for("writes with 3 of 5 up", lambda: len(writer.acked) > acked_then + 20)
        # They come back with the membership they saw (zoo.cfg now names it).
        for m in ens.members[:2]:
            m.start(wait=False, keep_config=True)
        ens.wait_for_quorum(60)
        for m in ens.members[:2]:
            assert "dynamicConfigFile=" in m.server.config_path.read_text()
            assert config_on(m, clients) == grown

        shrunk = reconfig(admin, joining=None, leaving="4,5", new_members=None)
        assert members_of(shrunk) == {i: "participant" for i in range(1, 4)}
        assert version_of(shrunk) > version_of(grown)
        for m in ens.members[3:]:
            m.stop()
        # Three voters survive losing one; 4 and 5 no longer count.
        ens.members[0].kill()
        ens.wait_for_quorum(60)
        acked_then = len(writer.acked)
        wait_for("writes with 2 of 3 up", lambda: len(writer.acked) > acked_then + 20)
        ens.members[0].start(wait=False, keep_config=True)
        ens.wait_for_quorum(60)
        writer.finish()
        assert writer.acked, "the writer never got a write through"

        for m in ens.members[:3]:
            reader = connect(clients, m.connect_string)
            reader.sync("/load")
            present = {int(c) for c in reader.get_children("/load")}
            lost = [n for n in writer.acked if n not in present]
            assert not lost, "member %d lost acknowledged writes %s" % (m.myid, lost[:10])
            assert reader.get("/zookeeper/config")[0] == shrunk
        ok = True
    finally:
        ens.cleanup(failed=not ok)


@pytest.mark.parametrize("kind", KINDS)
def test_observer_serves_without_a_vote(kind: str, clients: list[KazooClient]) -> None:
    ens = Ensemble(kind, 4)
    ok = False
    try:
        for m in ens.members:
            m.server.settings["server.4"] = "127.0.0.1:%d:%d:observer" % (
                ens.members[3].quorum_port, ens.members[3].election_port)
        ens.members[3].server.settings["peerType"] = "observer"
        for m in ens.members:
            m.start(wait=False)
        wait_for("a leader, two followers and an observer",
                 lambda: sorted(map(str, ens.modes().values()))
                 == ["follower", "follower", "leader", "observer"])
        observer = ens.members[3]
        leader = ens.leader()
        assert leader is not None and leader is not observer
        leader_mntr = dict(line.split("\t", 1) for line in
                           leader.four_letter("mntr").splitlines() if "\t" in line)
        assert (leader_mntr["zk_synced_followers"], leader_mntr["zk_synced_observers"],
                leader_mntr["zk_quorum_size"]) == ("2", "1", "3")
        observer_mntr = observer.four_letter("mntr")
        assert "zk_observer_master_id\t%d\n" % leader.myid in observer_mntr
        assert "zk_peer_state\tobserving - broadcast\n" in observer_mntr
        via_observer = connect(clients, observer.connect_string)
        via_observer.create("/written-through-observer", b"x")
        direct = connect(clients, ens.members[0].connect_string)
        direct.sync("/")
        assert direct.get("/written-through-observer")[0] == b"x"
        direct.create("/seen-by-observer", b"y")
        via_observer.sync("/")
        assert via_observer.get("/seen-by-observer")[0] == b"y"
        # With one voter down the other two are a quorum: the observer changes nothing.
        voters = [m for m in ens.members[:3] if m is not leader]
        voters[0].kill()
        via_observer.set("/seen-by-observer", b"z")
        # With two voters down the leader is one of three voters: no quorum, and
        # the observer cannot make one.
        voters[1].kill()
        wait_for("the observer to stop serving", lambda: observer.mode() is None, 30)
        assert leader.mode() is None
        ok = True
    finally:
        ens.cleanup(failed=not ok)


@pytest.mark.parametrize("kind", KINDS)
def test_standalone_disabled_starts_alone_and_grows(kind: str,
                                                    clients: list[KazooClient]) -> None:
    ens = Ensemble(kind, 3, {"reconfigEnabled": "true", "standaloneEnabled": "false"},
                   server_options={"system_properties": SUPER})
    ok = False
    try:
        first = ens.members[0]
        first.server.settings.pop("server.2")
        first.server.settings.pop("server.3")
        first.start(wait=False)
        wait_for("an ensemble of one to lead", lambda: first.mode() == "leader")
        admin = connect(clients, first.connect_string, auth_data=[("digest", "super:test")])
        admin.create("/alone", b"1")
        assert set(members_of(admin.get("/zookeeper/config")[0])) == {1}
        for m in ens.members[1:]:
            m.server.settings.pop("server.3" if m.myid == 2 else "server.2", None)
            m.server.settings["server.%d" % m.myid] = "127.0.0.1:%d:%d" % (
                m.quorum_port, m.election_port)
            m.start(wait=False)
        wait_for("2 and 3 to follow", lambda: all(m.mode() == "follower"
                                                  for m in ens.members[1:]))
        # One at a time: {1} -> {1, 2} -> {1, 2, 3}.
        for m in ens.members[1:]:
            reconfig(admin, joining=joining_line(m), leaving=None, new_members=None)
        data, _ = admin.get("/zookeeper/config")
        assert members_of(data) == {1: "participant", 2: "participant", 3: "participant"}
        # Three voters now: the first server may go and the others carry on.
        first.kill()
        ens.wait_for_quorum(60)
        survivor = connect(clients, ens.members[1].connect_string)
        survivor.create("/together", b"3")
        assert survivor.get("/alone")[0] == b"1"
        ok = True
    finally:
        ens.cleanup(failed=not ok)


def mntr_of(m: Member) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in m.four_letter("mntr").splitlines()
                if "\t" in line)


@pytest.mark.parametrize("upgrading", [False, True], ids=["no-upgrade", "upgrade"])
@pytest.mark.parametrize("kind", KINDS)
def test_local_sessions(kind: str, upgrading: bool, clients: list[KazooClient]) -> None:
    from kazoo.exceptions import EphemeralOnLocalSessionError

    ens = Ensemble(kind, 3, {"localSessionsEnabled": "true",
                             "localSessionsUpgradingEnabled": str(upgrading).lower()})
    ok = False
    try:
        ens.start(60)
        follower = ens.followers()[0]
        other = next(m for m in ens.members if m is not follower)
        c = connect(clients, follower.connect_string)
        c.create("/persistent", b"p")
        assert mntr_of(follower)["zk_local_sessions"] == "1"
        assert mntr_of(other)["zk_global_sessions"] == "0"  # nobody else knows it
        if upgrading:
            c.create("/ephemeral", b"e", ephemeral=True)
            watcher = connect(clients, other.connect_string)
            watcher.sync("/")
            assert watcher.get("/ephemeral")[1].ephemeralOwner == c.client_id[0]
            wait_for("the upgraded session to be global",
                     lambda: mntr_of(follower)["zk_local_sessions"] == "0")
            c.stop()
            watcher.sync("/")
            assert watcher.exists("/ephemeral") is None
        else:
            with pytest.raises(EphemeralOnLocalSessionError):
                c.create("/ephemeral", b"e", ephemeral=True)
            assert c.exists("/ephemeral") is None
        ok = True
    finally:
        ens.cleanup(failed=not ok)
