"""Tree digests across an ensemble (``zkpy.testing.replicasim``): a follower whose
tree silently diverged is caught, by the simulation's cross-member check after
every step and by the follower itself on the next commit, as ZooKeeper 3.8
catches it (``digest_mismatches_count`` in ``mntr``, an error in the log, and
the follower carries on)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from test_replica import create, open_session, other_followers

from zkpy.admin import fourletter, monitor
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.storage.formats import decode_entry
from zkpy.testing.digestcheck import DigestDivergence
from zkpy.testing.replicasim import Member, Sim
from zkpy.zab import events as ev
from zkpy.zab import messages as m


def _plant(member: Member, path: str) -> None:
    """A silent divergence: the follower's node differs, its own digest agrees with it
    (what a bug applying a txn on one member would leave)."""
    tree = member.core.tree
    node = tree.get(path)
    node.data = b"diverged"
    tree._rehash(path, node)


def _mismatches(member: Member) -> int:
    return dict(monitor.monitor_values(member.core))["digest_mismatches_count"]


def test_the_simulation_checks_every_member_agrees_at_every_zxid() -> None:
    sim = Sim()
    leader = sim.wait_stable()
    c = open_session(sim, leader)
    for i in range(5):
        assert create(sim, c, f"/n{i}", b"%d" % i)[0].err == 0
    assert sim.digests.checks > 0 and not sim.digests.divergences
    digests = {mb.core.tree.digest for mb in sim.members.values()}
    assert len(digests) == 1 and digests != {0}
    f, _ = other_followers(sim)
    _plant(f, "/n3")
    with pytest.raises(DigestDivergence, match=f"member {f.id} has"):
        sim.step(f.id, ev.Tick())


def test_a_diverged_follower_reports_each_commit(caplog: Any) -> None:
    sim = Sim(settings={"four_letter_words": frozenset({"*"})})
    sim.digests.strict = False
    leader = sim.wait_stable()
    c = open_session(sim, leader)
    assert create(sim, c, "/a", b"a")[0].err == 0
    f, g = other_followers(sim)
    _plant(f, "/a")
    with caplog.at_level(logging.ERROR, "zkpy.digest"):
        for i in range(3):
            assert create(sim, c, f"/b{i}")[0].err == 0
    # Each commit after the divergence mismatches on f alone; f carries on applying.
    assert _mismatches(f) == 3 and _mismatches(g) == 0 and _mismatches(leader) == 0
    assert f.core.tree.get("/b2") is not None and f.replica.mode == "follower"
    assert "First digest mismatch" in caplog.text
    assert "zk_digest_mismatches_count\t3\n" in fourletter.run(f.core, "mntr", None)
    # The simulation saw both: f's tree apart from the others', and f's own count.
    assert {member for _, member, _ in sim.digests.divergences} == {f.id}
    assert any("counted 3 digest mismatches" in msg for _, _, msg in sim.digests.divergences)


def test_the_simulation_reports_a_wrong_prediction_all_members_share() -> None:
    """A leader whose prep predicts a wrong digest: every tree agrees, yet every
    member (the leader too) counts the mismatch, and the simulation says so."""
    sim = Sim()
    leader = sim.wait_stable()
    c = open_session(sim, leader)
    replica = leader.core.replica

    class WrongDigest:
        """The leader core's upstream, but each create it proposes carries a wrong
        digest (as if prep had predicted it; prep's own methods cannot be patched
        when it is compiled)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(replica, name)

        def propose(self, req: Any) -> None:
            if req.digest is not None and req.type == Op.create:
                req.digest = S.TxnDigest(2, req.digest.treeDigest ^ 1)
            replica.propose(req)

    leader.core.replica = WrongDigest()
    with pytest.raises(DigestDivergence, match="counted 1 digest mismatches"):
        create(sim, c, "/a")


def test_digests_agree_after_snap_and_diff_catch_up() -> None:
    for window, kind in ((500, m.DIFF), (1, m.SNAP)):
        sim = Sim(log_window=window)
        old = sim.wait_stable()
        f, _ = other_followers(sim)
        c = open_session(sim, f)
        assert create(sim, c, "/x", b"1")[0].err == 0
        sim.crash(f.id)
        c2 = open_session(sim, old)
        for i in range(4):
            assert create(sim, c2, f"/y{i}", b"2")[0].err == 0
        assert create(sim, c2, "/x/e", flags=1)[0].err == 0  # ephemeral
        mark = len(sim.delivered)
        sim.restart(f.id)
        sim.wait_stable()
        kinds = [pkt.type for src, dst, pkt in sim.delivered[mark:]
                 if dst == f.id and pkt.type in (m.DIFF, m.SNAP, m.TRUNC)]
        assert kinds == [kind]
        assert create(sim, c2, "/z")[0].err == 0
        trees = [mb.core.tree for mb in sim.members.values()]
        assert len({t.digest for t in trees}) == 1
        assert all(t.digests.mismatches == 0 for t in trees)
        assert not sim.digests.divergences


def test_a_committed_txn_carries_the_leaders_digest() -> None:
    sim = Sim()
    leader = sim.wait_stable()
    c = open_session(sim, leader)
    assert create(sim, c, "/a")[0].err == 0
    for i in sim.ids:
        entries = [decode_entry(txn) for _, txn in sim.disks[i].log]
        creates = [(h, d) for h, _, d in entries if h.type == Op.create]
        assert creates and creates[-1][1] == S.TxnDigest(2, leader.core.tree.digest)
