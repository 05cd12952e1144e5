"""Local sessions (localSessionsEnabled, localSessionsUpgradingEnabled), deterministically.

On the in-memory ensemble of ``zkpy.testing.replicasim``: a session opened
on a member lives there alone (no createSession proposal, invisible to the
others, not in snapshots) until its first ephemeral upgrades it to a global
session through the leader; without upgrading that ephemeral is refused with
EPHEMERALONLOCALSESSION. A local session closes and expires where it lives,
and cannot move to another member.
"""

from __future__ import annotations

from test_replica import SimClient, call, create, open_session, txns
from zk_harness import frame

from zkpy.admin import monitor
from zkpy.jute import schema as S
from zkpy.jute.codec import decode_all
from zkpy.jute.protocol import Err, Op
from zkpy.testing.replicasim import Sim

EPHEMERAL = 1


def sim_with(upgrading: bool = True) -> Sim:
    sim = Sim(settings={"local_sessions": True, "local_sessions_upgrading": upgrading})
    sim.wait_stable()
    return sim


def created_sessions(sim: Sim, i: int) -> list[int]:
    return [h.clientId for h in txns(sim, i) if h.type == Op.createSession]


def test_a_local_session_is_never_proposed() -> None:
    sim = sim_with()
    f = sim.followers()[0]
    c = open_session(sim, f)
    session = f.core.sessions.get(c.session_id)
    assert session is not None and session.local
    assert c.session_id >> 56 == f.id  # made by the member it lives on
    for mb in sim.members.values():
        assert created_sessions(sim, mb.id) == []
        if mb is not f:
            assert mb.core.sessions.get(c.session_id) is None
    # It reads and writes persistent nodes like any session.
    hdr, _ = create(sim, c, "/p", b"1")
    assert hdr.err == 0
    assert all(mb.core.tree.get("/p") is not None for mb in sim.members.values())
    values = dict(monitor.monitor_values(f.core))
    assert (values["local_sessions"], values["global_sessions"]) == (1, 0)
    assert c.session_id not in f.core.session_timeouts()  # snapshots hold global ones only


def test_the_first_ephemeral_upgrades_the_session() -> None:
    sim = sim_with()
    f = sim.followers()[0]
    c = open_session(sim, f)
    hdr, body = create(sim, c, "/e", b"x", EPHEMERAL)
    assert hdr.err == 0 and decode_all(S.CreateResponse, body).path == "/e"
    leader = sim.leader()
    assert created_sessions(sim, leader.id) == [c.session_id]  # before the create
    kinds = [h.type for h in txns(sim, leader.id)]
    assert kinds.index(Op.createSession) < kinds.index(Op.create)
    for mb in sim.members.values():
        session = mb.core.sessions.get(c.session_id)
        assert session is not None and not session.local, mb.id
        assert mb.core.tree.get("/e").owner == c.session_id
    # Now global: closing it goes through the leader and takes the ephemeral along.
    call(sim, c, Op.closeSession)
    sim.settle()
    assert all(mb.core.tree.get("/e") is None for mb in sim.members.values())


def test_without_upgrading_an_ephemeral_is_refused() -> None:
    sim = sim_with(upgrading=False)
    f = sim.followers()[0]
    c = open_session(sim, f)
    hdr, _ = create(sim, c, "/e", b"x", EPHEMERAL)
    assert hdr.err == Err.EPHEMERALONLOCALSESSION
    multi = (S.MultiHeader(Op.create, False, -1).encode()
             + S.CreateRequest("/m", b"", [S.ACL(31, S.Id("world", "anyone"))], EPHEMERAL).encode()
             + S.MultiHeader(-1, True, -1).encode())
    hdr, _ = call(sim, c, Op.multi, multi)
    assert hdr.err == Err.EPHEMERALONLOCALSESSION
    assert f.core.sessions.get(c.session_id).local
    assert all(mb.core.tree.get("/e") is None for mb in sim.members.values())


def test_close_and_expiry_stay_local() -> None:
    sim = sim_with()
    f = sim.followers()[0]
    c = open_session(sim, f, timeout=2000)
    call(sim, c, Op.closeSession)
    assert f.core.sessions.get(c.session_id) is None
    quiet = open_session(sim, f, timeout=2000)
    sim.advance(5000)  # no pings
    assert f.core.sessions.get(quiet.session_id) is None
    assert all(created_sessions(sim, mb.id) == [] for mb in sim.members.values())
    assert all(h.type != Op.closeSession for mb in sim.members.values() for h in txns(sim, mb.id))


def test_a_local_session_cannot_move() -> None:
    sim = sim_with()
    f, g = sim.followers()
    c = open_session(sim, f)
    moved = SimClient(sim, g)
    moved.send(frame(S.ConnectRequest(0, 0, 30000, c.session_id, c.passwd, False)))
    sim.settle()
    resp = decode_all(S.ConnectResponse, moved.frames()[0])
    assert resp.timeOut == 0 and resp.sessionId == 0  # expired, as on ZooKeeper


def test_local_sessions_end_when_the_member_stops_serving() -> None:
    sim = sim_with()
    leader = sim.leader()
    f = sim.followers()[0]
    c = open_session(sim, f)
    sim.crash(leader.id)
    sim.wait_for(lambda: f.replica.mode != "follower" or f.replica.leader != leader.id)
    assert f.core.sessions.get(c.session_id) is None
