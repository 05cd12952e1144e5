"""Dynamic reconfiguration and observers, deterministically.

The membership arithmetic of ``zkpy.zab.membership`` on its own, then whole
ensembles in ``zkpy.testing.replicasim`` (real client frames, a fake clock,
disks that sync when the test lets them): a server outside the voters
follows without a vote until a reconfig adds it; a reconfig commits only
with a quorum of the old voters and of the new; one at a time; a removed
leader hands over; an observer gets INFORMs and never votes; a member that
missed a reconfig learns it when it syncs.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_replica import SimClient, call, create, open_session

from zkpy.config import parse_server_address
from zkpy.jute import schema as S
from zkpy.jute.codec import decode_all
from zkpy.jute.protocol import Err, Op
from zkpy.storage.formats import encode_txn
from zkpy.testing.replicasim import Member, Sim
from zkpy.zab import messages as m
from zkpy.zab.membership import (
    QuorumConfig,
    ReconfigError,
    parse_config_text,
    reconfig_of,
    reconfigured,
)


def addr(i: int, role: str = "participant", client: bool = True) -> str:
    text = f"127.0.0.1:{3000 + i}:{4000 + i}:{role}"
    return text + (f";127.0.0.1:{2000 + i}" if client else "")


def config(*ids: int, observers: tuple[int, ...] = (), version: int = 0) -> QuorumConfig:
    servers = {i: parse_server_address(addr(i)) for i in ids}
    servers.update({i: parse_server_address(addr(i, "observer")) for i in observers})
    return QuorumConfig(servers, version)


# -- the membership on its own ----------------------------------------------------------


def test_text_round_trip_and_quorum() -> None:
    c = config(1, 2, 3, observers=(7,), version=0x100000006)
    text = c.text()
    assert text.splitlines()[-1] == "version=100000006"
    assert text.splitlines()[0] == "server.1=" + addr(1)
    assert parse_config_text(text) == c
    assert c.voters == {1, 2, 3} and c.observers == {7}
    assert c.quorum({1, 2}) and not c.quorum({1, 7}) and not c.quorum({3})


def test_incremental_and_bulk_reconfig() -> None:
    base = config(1, 2, 3)
    grown = reconfigured(base, f"server.4={addr(4)},server.5={addr(5, 'observer')}", None, None)
    assert grown.voters == {1, 2, 3, 4} and grown.observers == {5}
    assert reconfigured(grown, None, "4,5", None).servers == base.servers
    # Leaving an unknown id changes nothing (and still makes a new version, as ZooKeeper).
    assert reconfigured(base, None, "77", None).servers == base.servers
    # A role or client port changes by joining again under the same id.
    assert reconfigured(base, f"server.3={addr(3, 'observer')}", None, None).voters == {1, 2}
    bulk = reconfigured(base, None, None, f"server.1={addr(1, client=False)},server.2={addr(2)}")
    assert bulk.voters == {1, 2} and bulk.servers[1].client_port is None


@pytest.mark.parametrize("joining,leaving,new_members", [
    ("some thing", None, None),
    (f"server.4={addr(4, client=False)}", None, None),  # joining needs a client port
    (f"server.x={addr(4)}", None, None),
    (None, "one", None),
    (f"server.4={addr(4)}", None, f"server.1={addr(1)}"),  # both forms at once
    (None, None, f"server.1={addr(1, 'observer')}"),  # nobody left to vote
])
def test_bad_reconfig_arguments(joining: str | None, leaving: str | None,
                                new_members: str | None) -> None:
    with pytest.raises(ReconfigError):
        reconfigured(config(1, 2, 3), joining, leaving, new_members)


def test_reconfig_txn_names_its_membership() -> None:
    c = config(1, 2, 4, version=0x500000002)
    hdr = S.TxnHeader(1, 2, 0x500000002, 0, Op.reconfig)
    txn = encode_txn(hdr, S.SetDataTxn("/zookeeper/config", c.text().encode(), -1))
    assert reconfig_of(txn) == c
    plain = encode_txn(S.TxnHeader(1, 2, 3, 0, Op.setData),
                       S.SetDataTxn("/zookeeper/config", c.text().encode(), -1))
    assert reconfig_of(plain) is None


# -- ensembles -----------------------------------------------------------------------------


def sim_of(configs: dict[int, QuorumConfig], down: tuple[int, ...] = ()) -> Sim:
    return Sim(configs=configs, down=down,
               settings={"reconfig_enabled": True, "skip_acl": True})


def reconfig(sim: Sim, c: SimClient, joining: str | None = None, leaving: str | None = None,
             new_members: str | None = None, from_config: int = -1) -> tuple[Any, Any]:
    hdr, body = call(sim, c, Op.reconfig,
                     S.ReconfigRequest(joining, leaving, new_members, from_config))
    return hdr, (decode_all(S.GetDataResponse, body) if hdr.err == 0 else None)


def members(sim: Sim) -> dict[int, Member]:
    return {i: mb for i, mb in sim.members.items() if mb.up}


def test_a_joining_server_follows_without_a_vote_until_added() -> None:
    three = config(1, 2, 3)
    sim = sim_of({1: three, 2: three, 3: three, 4: config(1, 2, 3, 4)}, down=(4,))
    leader = sim.wait_stable()
    assert leader.peer.config.version == m.make_zxid(1, 0)  # stamped by the first leader
    sim.restart(4)
    sim.wait_stable()
    four = sim.members[4]
    assert four.replica.mode == "follower" and four.replica.leader == leader.id
    assert 4 not in leader.peer.voters
    c = open_session(sim, leader)
    hdr, resp = reconfig(sim, c, joining=f"server.4={addr(4)}", from_config=leader.peer.config.version)
    assert hdr.err == 0
    new = parse_config_text(resp.data.decode())
    assert new.voters == {1, 2, 3, 4} and new.version == hdr.zxid == resp.stat.mzxid
    for mb in members(sim).values():
        assert mb.peer.config == new and mb.peer.voters == {1, 2, 3, 4}, mb.id
        assert mb.core.tree.get("/zookeeper/config").data == resp.data
        assert sim.configs[mb.id] == new  # what its dynamic config file would hold
    # A stale version is refused.
    hdr, _ = reconfig(sim, c, leaving="4", from_config=new.version - 1)
    assert hdr.err == Err.BADVERSION


def test_reconfig_commits_only_with_a_quorum_of_old_and_new_voters() -> None:
    three = config(1, 2, 3)
    five = config(1, 2, 3, 4, 5)
    sim = sim_of({1: three, 2: three, 3: three, 4: five, 5: five})
    leader = sim.wait_stable()
    assert all(sim.members[i].replica.mode == "follower" for i in (4, 5))
    old_followers = [i for i in (1, 2, 3) if i != leader.id]
    c = open_session(sim, leader)
    for i in old_followers:  # of the old voters only the leader will have logged it
        sim.hold(i)
    xid = c.submit(Op.reconfig, S.ReconfigRequest(f"server.4={addr(4)},server.5={addr(5)}",
                                                  None, None, -1))
    sim.settle()
    # The leader, 4 and 5 are a quorum of the new five, not of the old three.
    assert c.replies() == []
    assert leader.peer.voters == {1, 2, 3}
    sim.release(old_followers[0])
    [(hdr, _)] = c.replies()
    assert (hdr.xid, hdr.err) == (xid, 0)
    assert leader.peer.voters == {1, 2, 3, 4, 5}
    sim.release(old_followers[1])
    sim.settle()
    assert all(mb.peer.voters == {1, 2, 3, 4, 5} for mb in members(sim).values())


def test_one_reconfig_at_a_time() -> None:
    three = config(1, 2, 3)
    sim = sim_of({1: three, 2: three, 3: three})
    leader = sim.wait_stable()
    c = open_session(sim, leader)
    for f in sim.followers():
        sim.hold(f.id)
    first = c.submit(Op.reconfig, S.ReconfigRequest(f"server.9={addr(9, 'observer')}",
                                                    None, None, -1))
    second = c.submit(Op.reconfig, S.ReconfigRequest(None, "9", None, -1))
    sim.settle()
    for f in sim.followers():
        sim.release(f.id)
    got = {hdr.xid: hdr.err for hdr, _ in c.replies()}
    assert got == {first: 0, second: Err.RECONFIGINPROGRESS}


def test_a_removed_leader_hands_over_and_follows() -> None:
    three = config(1, 2, 3)
    sim = sim_of({1: three, 2: three, 3: three})
    leader = sim.wait_stable()
    c = open_session(sim, leader)
    create(sim, c, "/before", b"1")
    hdr, resp = reconfig(sim, c, leaving=str(leader.id))
    assert hdr.err == 0
    assert parse_config_text(resp.data.decode()).voters == {1, 2, 3} - {leader.id}
    # It steps down at its next event, once its COMMIT is out; the others elect.
    sim.wait_for(lambda: sim.stable() and sim.leader().id != leader.id)
    new_leader = sim.leader()
    assert leader.replica.mode == "follower" and leader.replica.leader == new_leader.id
    c = open_session(sim, leader)  # served by the removed server, now without a vote
    hdr, _ = create(sim, c, "/after", b"2")
    assert hdr.err == 0
    for mb in members(sim).values():
        assert mb.core.tree.get("/before") is not None and mb.core.tree.get("/after") is not None


def test_an_observer_applies_informs_and_never_votes() -> None:
    c4 = config(1, 2, 3, observers=(4,))
    sim = sim_of({i: c4 for i in (1, 2, 3, 4)})
    leader = sim.wait_stable()
    observer = sim.members[4]
    assert observer.replica.mode == "observer"
    assert observer.replica.peer_state() == "observing - broadcast"
    sim.delivered.clear()
    c = open_session(sim, observer)  # its session and write go through the leader
    hdr, _ = create(sim, c, "/via-observer", b"o")
    assert hdr.err == 0
    to_observer = [pkt.type for src, dst, pkt in sim.delivered if dst == 4]
    from_observer = [pkt.type for src, dst, pkt in sim.delivered if src == 4]
    assert m.INFORM in to_observer
    assert m.PROPOSAL not in to_observer and m.COMMIT not in to_observer
    assert m.ACK not in from_observer
    assert observer.core.tree.get("/via-observer").data == b"o"
    # Two voters down: the leader has no quorum although three of four servers are up.
    followers = [i for i in (1, 2, 3) if i != leader.id]
    sim.crash(followers[0])
    sim.advance(2000)
    assert leader.replica.mode == "leader"
    sim.crash(followers[1])
    sim.wait_for(lambda: leader.replica.mode != "leader" and observer.replica.mode != "observer")


def test_a_member_that_missed_a_reconfig_learns_it_on_sync() -> None:
    three = config(1, 2, 3)
    sim = sim_of({1: three, 2: three, 3: three})
    leader = sim.wait_stable()
    late = sim.followers()[0]
    sim.crash(late.id)
    c = open_session(sim, leader)
    hdr, resp = reconfig(sim, c, joining=f"server.9={addr(9, 'observer')}")
    assert hdr.err == 0
    assert sim.configs[late.id].observers == set()  # its files still hold the old one
    sim.restart(late.id)
    sim.wait_stable()
    assert late.id in members(sim)
    assert sim.members[late.id].peer.config.observers == {9}
    assert sim.members[late.id].core.tree.get("/zookeeper/config").data == resp.data
