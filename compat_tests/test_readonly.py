"""Read-only mode (-Dreadonlymode.enabled=true) of a real 3-server ensemble, zkpy beside
Apache ZooKeeper 3.8.

    pytest compat_tests/test_readonly.py                 # both kinds
    pytest compat_tests/test_readonly.py -k zookeeper    # the reference only

A member left alone (two of three stopped) serves read-only clients from its
tree after 2 s of looking, and goes back to read-write when the others return.
ZooKeeper 3.8 takes new sessions in that mode only with localSessionsEnabled
(else it answers the createSession with a bare NOTREADONLY reply header) and
never lets a global session reconnect there; the ensembles here enable local
sessions unless a test is about their absence. What is checked is behaviour,
answer formats and order, never timing beyond bounded waits.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.protocol.states import KeeperState

from compat_tests.differential.rawclient import RawClient, RawConnectionLoss, RawSessionExpired
from compat_tests.ensembles import KINDS, REFERENCE, RETRY, started, stop_all, wait_until
from zkpy.jute import schema as S
from zkpy.jute.codec import encode
from zkpy.jute.protocol import Op
from zkpy.testing.ensemble import Ensemble, Member

LOCAL_SESSIONS = {"localSessionsEnabled": "true", "localSessionsUpgradingEnabled": "true"}
OPEN = [S.ACL(31, S.Id("world", "anyone"))]
NOTREADONLY = -119
_LEN = struct.Struct(">i")


def read_only_ensemble(kind: str, local_sessions: bool = True) -> Ensemble:
    return Ensemble(kind, 3, settings=LOCAL_SESSIONS if local_sessions else None,
                    server_options={"system_properties": {"readonlymode.enabled": "true"}})


def isro(member: Member) -> str:
    try:
        return member.four_letter("isro")
    except OSError:
        return ""


def leave_alone(ens: Ensemble, lone: Member) -> None:
    """Stop every other member at once; wait until ``lone`` serves read-only."""
    others = [m for m in ens.members if m is not lone]
    threads = [threading.Thread(target=m.stop, daemon=True) for m in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: isro(lone) == "ro", 30, "member %d to serve read-only" % lone.myid)


def bring_back(ens: Ensemble, lone: Member) -> None:
    for m in ens.members:
        if m is not lone:
            m.start(timeout=60, wait=False)
    ens.wait_for_quorum(60)


def handshake(member: Member, read_only: bool, session: tuple[int, bytes] = (0, bytes(16))
              ) -> tuple[bytes, bool]:
    """Send a ConnectRequest; every byte answered within 2 s, and whether the server
    closed the connection."""
    with socket.create_connection((member.host, member.port), timeout=5) as sock:
        body = encode(S.ConnectRequest(0, 0, 10000, session[0], session[1], read_only))
        sock.sendall(_LEN.pack(len(body)) + body)
        sock.settimeout(2.0)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        return data, True


def reconnect(client: RawClient, session: tuple[int, bytes]) -> Any:
    """What the server makes of ``client`` reopening ``session``."""
    try:
        client._connect(session)
        return "accepted"
    except RawSessionExpired:
        return ("expired", client.server_read_only)
    except RawConnectionLoss:
        return "closed"


def last_zxid(member: Member) -> int:
    for line in member.four_letter("srvr").splitlines():
        if line.startswith("Zxid: "):
            return int(line.split()[1], 16)
    raise AssertionError("no Zxid in srvr")


# --------------------------------------------------------------------------
# a Kazoo client through read-only mode and back


@pytest.fixture(params=KINDS)
def ensemble(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    yield from started(request, read_only_ensemble(request.param))


def test_kazoo_reads_in_read_only_mode_and_writes_after_the_quorum_returns(ensemble):
    ens = ensemble
    made: list[KazooClient] = []

    def client(hosts: str, **kw: Any) -> KazooClient:
        c = KazooClient(hosts=hosts, timeout=10.0, connection_retry=dict(RETRY), **kw)
        made.append(c)
        c.start(timeout=30)
        return c

    try:
        writer = client(ens.connect_string)
        writer.create("/ro", b"top")
        for name in ("a", "b", "c"):
            writer.create("/ro/" + name, name.encode())
        writer.sync("/ro")
        lone = ens.member(1)
        client(lone.connect_string).sync("/ro")  # lone has every write before we stop
        writer.stop()

        leave_alone(ens, lone)
        assert "Mode: read-only" in lone.four_letter("srvr")
        reader = client(ens.connect_string, read_only=True)
        states: list[str] = []
        reader.add_listener(states.append)
        wait_until(lambda: reader.client_state == KeeperState.CONNECTED_RO, 30, "CONNECTED_RO")
        assert reader.state == KazooState.CONNECTED
        assert reader.get("/ro/b")[0] == b"b"
        assert sorted(reader.get_children("/ro")) == ["a", "b", "c"]
        with pytest.raises(NotReadOnlyCallError):
            reader.create("/ro/d")
        with pytest.raises(NotReadOnlyCallError):
            reader.set("/ro", b"changed")
        assert reader.get("/ro")[0] == b"top"
        assert isro(lone) == "ro"

        bring_back(ens, lone)
        assert isro(lone) == "rw"
        assert lone.mode() in ("leader", "follower")
        # The read-only session was the lone member's own: gone now; Kazoo starts anew
        # on a read-write server.
        wait_until(lambda: reader.client_state == KeeperState.CONNECTED, 30,
                   "the reader to find a read-write server")
        assert KazooState.LOST in states
        again = client(lone.connect_string)
        again.create("/ro/d", b"d")
        assert sorted(again.get_children("/ro")) == ["a", "b", "c", "d"]
        assert again.get("/ro")[0] == b"top"
        for m in ens.members:
            other = client(m.connect_string)
            other.sync("/ro")
            assert sorted(other.get_children("/ro")) == ["a", "b", "c", "d"], m.myid
    finally:
        stop_all(made)


# --------------------------------------------------------------------------
# what a read-only member answers, zkpy against the reference


def _read_only_answers(kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ens = read_only_ensemble(kind)
    failed = True
    try:
        ens.start(timeout=60)
        lone = ens.member(1)
        setup = RawClient(lone.host, lone.port)
        for path, data in (("/ro", b"top"), ("/ro/a", b"a")):
            assert setup.call(Op.create, S.CreateRequest(path, data, OPEN, 0))[0] == 0
        setup.close_session()
        earlier = RawClient(lone.host, lone.port, timeout_ms=30000, read_only=True)
        earlier.close_socket()  # a (local) session of the read-write days
        leave_alone(ens, lone)
        zxid = last_zxid(lone)

        def norm(z: int) -> str:
            return "last" if z == zxid else hex(z)

        srvr = lone.four_letter("srvr").splitlines()
        out["srvr"] = [line.split(":", 1)[0] for line in srvr]
        out["srvr_mode"] = [line for line in srvr if line.startswith("Mode:")]
        out["stat"] = [line.split(":", 1)[0] for line in lone.four_letter("stat").splitlines()
                       if not line.startswith(" /")]
        mntr = lone.four_letter("mntr")
        out["mntr"] = [line.split("\t", 1)[0] for line in mntr.splitlines()
                       if "_per_namespace" not in line]
        values = dict(line.split("\t", 1) for line in mntr.splitlines())
        out["mntr_state"] = values["zk_server_state"]
        conf = lone.four_letter("conf")
        out["conf"] = [line.split("=", 1)[0] for line in conf.splitlines()]
        out["conf end"] = conf[conf.rindex("peerType"):]
        out["isro"] = isro(lone)
        out["not_read_only_client"] = handshake(lone, read_only=False)
        out["earlier session"] = reconnect(earlier, (earlier.session_id, earlier.passwd))

        raw = RawClient(lone.host, lone.port, timeout_ms=10000, read_only=True)
        out["session"] = (raw.server_read_only, raw.timeout, raw.session_id >> 56)
        ops: list[tuple[str, int, Any]] = [
            ("getData", Op.getData, S.GetDataRequest("/ro", False)),
            ("getChildren", Op.getChildren, S.GetChildrenRequest("/ro", True)),
            ("exists", Op.exists, S.ExistsRequest("/none", True)),
            ("create", Op.create, S.CreateRequest("/ro/x", b"", OPEN, 0)),
            ("create2", Op.create2, S.CreateRequest("/ro/x", b"", OPEN, 0)),
            ("createContainer", Op.createContainer, S.CreateRequest("/ro/x", b"", OPEN, 4)),
            ("delete", Op.delete, S.DeleteRequest("/ro/a", -1)),
            ("setData", Op.setData, S.SetDataRequest("/ro", b"x", -1)),
            ("setACL", Op.setACL, S.SetACLRequest("/ro", OPEN, -1)),
            ("check", Op.check, S.CheckVersionRequest("/ro", 0)),
            ("sync", Op.sync, S.SyncRequest("/ro")),
            ("getACL", Op.getACL, S.GetACLRequest("/ro")),
        ]
        for name, op, record in ops:
            err, body = raw.call(op, record)
            out["op " + name] = (err, norm(raw.last_zxid), len(body) if err else "body")
        raw.ping()
        out["ping zxid"] = norm(raw.last_zxid)
        out["closeSession"] = (raw.close_session(), norm(raw.last_zxid))

        again = RawClient(lone.host, lone.port, timeout_ms=10000, read_only=True)
        sid, passwd = again.session_id, again.passwd
        again.close_socket()
        again._connect((sid, passwd))
        out["local reconnect"] = (again.session_id == sid, again.server_read_only)
        again.close_socket()
        quiet = RawClient(lone.host, lone.port, timeout_ms=1000, read_only=True)
        quiet_session = (quiet.session_id, quiet.passwd)
        quiet.close_socket()
        time.sleep(3.5)  # past its timeout, unpinged
        out["expired reconnect"] = reconnect(quiet, quiet_session)

        live = RawClient(lone.host, lone.port, timeout_ms=30000, read_only=True)
        bring_back(ens, lone)
        out["back isro"] = isro(lone)
        try:
            live.ping()
            out["connection after"] = "open"
        except RawConnectionLoss:
            out["connection after"] = "closed"
        out["session after"] = reconnect(live, (live.session_id, live.passwd))
        failed = False
        return out
    finally:
        ens.cleanup(failed=failed)


@REFERENCE
@pytest.mark.reference
def test_read_only_answers_match_zookeeper():
    ref = _read_only_answers("zookeeper")
    ours = _read_only_answers("zkpy")
    # What ZooKeeper 3.8 answered, pinned, so the comparison is not only with itself.
    assert ref["isro"] == "ro" and ref["back isro"] == "rw"
    assert ref["srvr"][1] == "READ-ONLY mode; serving only read-only clients"
    assert ref["srvr_mode"] == ["Mode: read-only"] and ref["mntr_state"] == "read-only"
    assert ref["not_read_only_client"] == (b"", True)
    assert ref["session"] == (True, 10000, 1)
    assert ref["earlier session"] == ("expired", True)
    assert ref["conf end"] == "peerType=0\n"
    assert ref["op create"] == (NOTREADONLY, "last", 0)
    assert ref["op sync"] == (NOTREADONLY, "last", 0)
    assert ref["op getData"] == (0, "last", "body")
    assert ref["closeSession"] == (0, "last")
    assert ref["local reconnect"] == (True, True)
    assert ref["expired reconnect"] == ("expired", True)
    assert ref["connection after"] == "closed"
    assert ref["session after"] == ("expired", False)
    assert "zk_peer_state" not in ref["mntr"] and "membership: " not in ref["conf"]
    for key in ref:
        assert ours[key] == ref[key], key
    assert ours == ref


# --------------------------------------------------------------------------
# without localSessionsEnabled


@pytest.mark.parametrize("kind", KINDS)
def test_without_local_sessions_read_only_mode_takes_no_sessions(kind):
    ens = read_only_ensemble(kind, local_sessions=False)
    failed = True
    try:
        ens.start(timeout=60)
        lone = ens.member(1)
        old = RawClient(lone.host, lone.port, timeout_ms=30000, read_only=True)
        assert not old.server_read_only
        old.close_socket()
        leave_alone(ens, lone)
        zxid = last_zxid(lone)
        # A new session: a bare ReplyHeader(0, last zxid, NOTREADONLY), no ConnectResponse.
        data, _ = handshake(lone, read_only=True)
        assert data == _LEN.pack(16) + struct.pack(">iqi", 0, zxid, NOTREADONLY)
        # A global session may not come back: closed without an answer.
        assert handshake(lone, True, (old.session_id, old.passwd)) == (b"", True)
        assert handshake(lone, read_only=False) == (b"", True)
        assert isro(lone) == "ro"
        failed = False
    finally:
        ens.cleanup(failed=failed)
