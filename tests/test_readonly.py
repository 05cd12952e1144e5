"""Read-only mode (readonlymode.enabled) of ensemble members, on the in-memory ensemble.

A member left without a quorum turns read-only after max(2000 ms, tickTime) of
LOOKING, never before; it then takes only read-only clients, makes local sessions
for them (with localSessionsEnabled; without it, none at all), refuses global
sessions, answers reads from its tree and every write or sync with NOTREADONLY,
expires only its local sessions, and goes back to the election's outcome (closing
every connection, dropping its local sessions) as soon as the election decides.
The behaviour each test pins was measured on Apache ZooKeeper 3.8.0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from test_replica import SimClient, assert_converged, call, create, open_session, tree_state
from zk_harness import OPEN, frame, make_core

from zkpy.admin import fourletter
from zkpy.jute import schema as S
from zkpy.jute.codec import decode_all
from zkpy.jute.protocol import Err, Op
from zkpy.net.adminserver import AdminContext, run_command
from zkpy.server.readonly import ReadOnlyServer
from zkpy.server.sessions import session_password
from zkpy.testing.replicasim import Member, Sim

WORDS = {"four_letter_words": frozenset({"*"})}
RO = {"readonly_mode": True, "local_sessions": True, "local_sessions_upgrading": True, **WORDS}
EPHEMERAL = 1
NOTREADONLY = int(Err.NOTREADONLY)


def connect(sim: Sim, member: Member, read_only: bool = True, session_id: int = 0,
            passwd: bytes = bytes(16), timeout: int = 30000) -> tuple[SimClient, list[bytes]]:
    """A handshake; the client and the frames the member answered with."""
    c = SimClient(sim, member)
    c.send(frame(S.ConnectRequest(0, 0, timeout, session_id, passwd, read_only)))
    sim.settle()
    frames = c.frames()
    if len(frames) == 1 and len(frames[0]) > 16:
        resp = decode_all(S.ConnectResponse, frames[0])
        c.session_id, c.passwd, c.timeout = resp.sessionId, resp.passwd, resp.timeOut
    return c, frames


def response(frames: list[bytes]) -> Any:
    assert len(frames) == 1, frames
    return decode_all(S.ConnectResponse, frames[0])


def isro(member: Member) -> str:
    return fourletter.run(member.core, "isro", None)


class Alone(NamedTuple):
    sim: Sim
    lone: Member  # the member left without a quorum
    old: SimClient  # a global session made on it (it owns /eph)
    local: SimClient | None  # a local session made on it before (localSessionsEnabled)
    since: int  # when it started looking


def alone(settings: dict[str, Any] | None = None) -> Alone:
    """Three members with data and sessions on ``lone``; then the two others crash."""
    sim = Sim(settings=dict(RO) if settings is None else settings)
    leader = sim.wait_stable()
    lone = sim.followers()[0]
    c = open_session(sim, lone)
    assert create(sim, c, "/a", b"hello")[0].err == 0
    assert create(sim, c, "/a/b", b"x")[0].err == 0
    assert create(sim, c, "/eph", flags=EPHEMERAL)[0].err == 0  # (upgrades a local session)
    assert c.session_id in lone.core.session_timeouts()
    local = open_session(sim, lone) if sim.settings.get("local_sessions") else None
    assert local is None or local.session_id not in lone.core.session_timeouts()
    for mb in list(sim.members.values()):
        if mb is not lone:
            sim.crash(mb.id)
    assert c.closed and not lone.core.serving  # lost its leader: not serving
    assert lone.replica.mode == "looking" and leader.id != lone.id
    return Alone(sim, lone, c, local, sim.now)


def read_only(settings: dict[str, Any] | None = None) -> Alone:
    world = alone(settings)
    world.sim.advance(2000)
    assert world.lone.replica.mode == "read-only"
    return world


# -- when ------------------------------------------------------------------------------------


def test_a_member_turns_read_only_after_two_seconds_of_looking_not_before() -> None:
    sim, lone, _, _, since = alone()
    sim.advance(1999)
    assert lone.replica.mode == "looking" and not lone.core.serving
    assert not lone.core.read_only and isro(lone) == "null"
    sim.advance(1)
    assert sim.now == since + 2000
    assert lone.replica.mode == "read-only" and lone.core.serving
    assert lone.core.read_only and lone.replica.read_only.active
    assert isro(lone) == "ro"
    srvr = fourletter.run(lone.core, "srvr", None).splitlines()
    assert srvr[1] == "READ-ONLY mode; serving only read-only clients"
    assert "Mode: read-only" in srvr
    mntr = dict(line.split("\t", 1) for line in
                fourletter.run(lone.core, "mntr", None).splitlines())
    assert mntr["zk_server_state"] == "read-only"
    assert "zk_peer_state" not in mntr and "zk_quorum_size" not in mntr
    assert list(mntr)[3:5] == ["zk_avg_latency", "zk_num_alive_connections"]  # measured
    lone.replica.conf = [("peerType", 0), ("membership: ", ""), ("server.1", "h:1:2"),
                         ("version", 0)]  # as the adapter sets it
    conf = fourletter.run(lone.core, "conf", None)
    assert conf.endswith("peerType=0\n") and "membership" not in conf
    admin = AdminContext(lone.core, clock=lambda: sim.now)
    assert run_command(admin, "is_read_only")["read_only"] is True
    srvr_json = run_command(admin, "srvr")
    assert srvr_json["read_only"] is True
    assert srvr_json["server_stats"]["server_state"] == "read-only"


def test_without_readonlymode_a_member_only_looks() -> None:
    sim, lone, *_ = alone(WORDS)
    sim.advance(10_000)
    assert lone.replica.mode == "looking" and not lone.core.read_only
    assert isro(lone) == "null"


def test_the_grace_period_is_at_least_a_tick() -> None:
    ro = ReadOnlyServer(make_core(readonly_mode=True, tick_time=3000))
    ro.role(True, 1000)
    assert ro.due() == 4000
    ro.poll(3999)
    assert not ro.active
    ro.poll(4000)
    assert ro.active and ro.due() is None
    off = ReadOnlyServer(make_core(tick_time=3000))
    off.role(True, 1000)
    assert off.due() is None


def test_an_election_that_decides_in_time_never_goes_read_only() -> None:
    sim, lone, *_ = alone()
    sim.advance(1500)
    back = next(i for i in sim.ids if i != lone.id)
    sim.restart(back)
    sim.wait_stable()
    assert lone.replica.read_only.due() is None
    sim.advance(5000)
    assert lone.replica.mode in ("leader", "follower")


# -- clients and sessions ----------------------------------------------------------------------


def test_only_read_only_clients_and_local_sessions_are_taken() -> None:
    sim, lone, old, local, _ = read_only()
    assert local is not None
    # A client that does not allow read-only mode: closed without an answer.
    c, frames = connect(sim, lone, read_only=False)
    assert frames == [] and c.closed
    # A global session (made through the quorum) may not come back in read-only mode.
    c, frames = connect(sim, lone, session_id=old.session_id, passwd=old.passwd)
    assert frames == [] and c.closed
    assert old.session_id in lone.core.session_timeouts()
    # A local session of the read-write days was dropped with them: expired.
    c, frames = connect(sim, lone, session_id=local.session_id, passwd=local.passwd)
    resp = response(frames)
    assert (resp.sessionId, resp.timeOut, resp.readOnly) == (0, 0, True) and c.closed
    # A new session is made here: readOnly in the answer, no txn, an id of this server.
    log_before = list(sim.disks[lone.id].log)
    c, frames = connect(sim, lone, timeout=6000)
    resp = response(frames)
    assert resp.readOnly and resp.timeOut == 6000 and not c.closed
    assert resp.sessionId >> 56 == lone.id and resp.passwd == session_password(resp.sessionId)
    assert lone.core.sessions.sessions[resp.sessionId].local
    assert resp.sessionId not in lone.core.session_timeouts()  # never replicated
    assert sim.disks[lone.id].log == log_before
    # It may reconnect to its session (here, the same server).
    c.conn.abort("test", quiet=True)
    lone.core.flush()
    again, frames = connect(sim, lone, session_id=resp.sessionId, passwd=resp.passwd)
    resp2 = response(frames)
    assert (resp2.sessionId, resp2.readOnly) == (resp.sessionId, True)


def test_without_local_sessions_new_sessions_get_zookeepers_bare_notreadonly() -> None:
    sim, lone, old, _, _ = read_only({"readonly_mode": True, **WORDS})
    sessions = set(lone.core.sessions.sessions)
    c, frames = connect(sim, lone)
    # ZooKeeper 3.8: a ReplyHeader(0, last zxid, NOTREADONLY) where the ConnectResponse goes.
    assert frames == [S.ReplyHeader(0, lone.core.last_zxid, NOTREADONLY).encode()]
    assert c.closed and set(lone.core.sessions.sessions) == sessions
    c, frames = connect(sim, lone, session_id=old.session_id, passwd=old.passwd)
    assert frames == [] and c.closed  # a global session: refused as ever


def test_reads_work_and_every_write_and_sync_is_answered_notreadonly() -> None:
    sim, lone, *_ = read_only()
    before = tree_state(lone.core)
    zxid = lone.core.last_zxid
    c, frames = connect(sim, lone)
    assert response(frames).readOnly
    hdr, body = call(sim, c, Op.getData, S.GetDataRequest("/a", True))
    assert (hdr.err, hdr.zxid) == (0, zxid)
    assert decode_all(S.GetDataResponse, body).data == b"hello"
    hdr, body = call(sim, c, Op.getChildren, S.GetChildrenRequest("/a", False))
    assert decode_all(S.GetChildrenResponse, body).children == ["b"]
    assert call(sim, c, Op.exists, S.ExistsRequest("/none", True))[0].err == -101
    assert call(sim, c, Op.ping, xid=-2)[0].err == 0
    c.send(frame(S.RequestHeader(-4, Op.auth), S.AuthPacket(0, "digest", b"u:p")))
    sim.settle()
    assert [(h.xid, h.err) for h, _ in c.replies()] == [(-4, 0)]
    multi = b"".join(r.encode() for r in (
        S.MultiHeader(Op.create, False, -1), S.CreateRequest("/m", b"", OPEN, 0),
        S.MultiHeader(-1, True, -1)))
    writes: list[tuple[int, Any]] = [
        (Op.create, S.CreateRequest("/c", b"", OPEN, 0)),
        (Op.create2, S.CreateRequest("/c", b"", OPEN, 0)),
        # (not a session upgrade, nor EPHEMERALONLOCALSESSION: the read-only check is first)
        (Op.create, S.CreateRequest("/e", b"", OPEN, EPHEMERAL)),
        (Op.createContainer, S.CreateRequest("/c", b"", OPEN, 4)),
        (Op.createTTL, S.CreateTTLRequest("/c", b"", OPEN, 5, 1000)),
        (Op.delete, S.DeleteRequest("/a/b", -1)),
        (Op.setData, S.SetDataRequest("/a", b"z", -1)),
        (Op.setACL, S.SetACLRequest("/a", OPEN, -1)),
        (Op.check, S.CheckVersionRequest("/a", 0)),
        (Op.multi, multi),
        (Op.multi, multi.replace(S.CreateRequest("/m", b"", OPEN, 0).encode(),
                                 S.CreateRequest("/m", b"", OPEN, EPHEMERAL).encode())),
        (Op.reconfig, S.ReconfigRequest("", "", "", -1)),
        (Op.sync, S.SyncRequest("/a")),
    ]
    for op, record in writes:
        hdr, body = call(sim, c, op, record)
        assert (hdr.err, hdr.zxid, body) == (NOTREADONLY, zxid, b""), Op(op).name
    # A read queued behind a refused write is answered right after it, in order.
    x1 = c.submit(Op.setData, S.SetDataRequest("/a", b"z", -1))
    x2 = c.submit(Op.getData, S.GetDataRequest("/a", False))
    sim.settle()
    assert [(h.xid, h.err) for h, _ in c.replies()] == [(x1, NOTREADONLY), (x2, 0)]
    assert tree_state(lone.core) == before and lone.core.last_zxid == zxid
    assert lone.core.outstanding_writes == 0 and lone.core.sessions.get(c.session_id).local
    # Its own session's closeSession closes it here and is answered OK.
    hdr, _ = call(sim, c, Op.closeSession)
    assert (hdr.err, hdr.zxid) == (0, zxid) and c.closed
    assert c.session_id not in lone.core.sessions.sessions
    assert tree_state(lone.core) == before


def test_read_only_sessions_expire_here_global_sessions_do_not() -> None:
    sim, lone, old, _, _ = read_only()
    quiet, _ = connect(sim, lone, timeout=4000)
    alive, _ = connect(sim, lone, timeout=4000)
    for _ in range(6):
        sim.advance(1000)
        assert call(sim, alive, Op.ping, xid=-2)[0].err == 0
    assert quiet.closed and quiet.session_id not in lone.core.sessions.sessions
    assert not alive.closed and alive.session_id in lone.core.sessions.sessions
    sim.advance(60_000)  # far past the global session's timeout
    assert lone.replica.mode == "read-only"
    assert old.session_id in lone.core.session_timeouts()
    assert not lone.core.sessions.sessions[old.session_id].closing
    assert lone.core.tree.get("/eph") is not None


# -- back to read-write ----------------------------------------------------------------------


def test_when_the_election_decides_read_only_ends_and_its_sessions_are_gone() -> None:
    sim, lone, old, _, _ = read_only()
    ro, frames = connect(sim, lone)
    sid, passwd = ro.session_id, ro.passwd
    assert response(frames).readOnly
    for i in sim.ids:
        if i != lone.id:
            sim.restart(i)
    sim.wait_stable()
    assert ro.closed  # every client connection closed when the election decided
    assert lone.replica.mode in ("leader", "follower") and isro(lone) == "rw"
    assert not lone.core.read_only
    assert sid not in lone.core.sessions.sessions
    assert old.session_id in lone.core.sessions.sessions
    # The read-only session is unknown now; a plain client writes through this member.
    gone, frames = connect(sim, lone, read_only=True, session_id=sid, passwd=passwd)
    resp = response(frames)
    assert (resp.sessionId, resp.readOnly) == (0, False) and gone.closed
    back = open_session(sim, lone, session_id=old.session_id, passwd=old.passwd)
    hdr, body = call(sim, back, Op.getData, S.GetDataRequest("/a", False))
    assert hdr.err == 0 and decode_all(S.GetDataResponse, body).data == b"hello"
    assert create(sim, back, "/after", b"rw")[0].err == 0
    assert_converged(sim)


def test_read_only_mode_comes_back_when_the_quorum_goes_again() -> None:
    sim, lone, *_ = read_only()
    for i in sim.ids:
        if i != lone.id:
            sim.restart(i)
    sim.wait_stable()
    for mb in list(sim.members.values()):
        if mb is not lone:
            sim.crash(mb.id)
    sim.advance(1999)
    assert lone.replica.mode == "looking"
    sim.advance(1)
    assert lone.replica.mode == "read-only"
    c, frames = connect(sim, lone)
    assert response(frames).readOnly
