"""The four-letter words of a quorum member, zkpy against Apache ZooKeeper 3.8.

One 3-server ensemble of each kind; the structure of what a leader and a
follower answer must be the reference's: the ``srvr`` lines, the ``mntr``
keys in order (leader-only keys and per-learner summaries included), the
``conf`` keys and the quorum values both can know (serverId, the limits,
the membership lines, the role in ``mntr``). Values that depend on load
and timing are not compared.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zkpy.testing.ensemble import Ensemble, Member
from zkpy.testing.launchers import find_apache_zookeeper

INSTALL, REASON = find_apache_zookeeper()
pytestmark = pytest.mark.skipif(INSTALL is None, reason="Apache ZooKeeper unavailable: %s" % REASON)

# (Nothing skipped: the per-namespace summaries, /zookeeper's included, are kept too.)
_SKIP: tuple[str, ...] = ()


@pytest.fixture(scope="module")
def ensembles() -> Iterator[dict[str, Ensemble]]:
    started: dict[str, Ensemble] = {}
    try:
        for kind in ("zookeeper", "zkpy"):
            ens = Ensemble(kind, 3)
            started[kind] = ens
            ens.start(timeout=60)
        yield started
    finally:
        for ens in started.values():
            ens.cleanup()


def _keys(text: str) -> list[str]:
    return [line.split("\t", 1)[0] for line in text.splitlines()
            if line and not any(s in line for s in _SKIP)]


def _values(text: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def _conf(member: Member) -> list[tuple[str, str]]:
    out = []
    text = member.four_letter("conf")
    for line in text.splitlines():
        key, _, value = line.partition("=")
        out.append((key, value))
    out.append(("<ends with a newline>", str(text.endswith("\n"))))
    return out


def _roles(ens: Ensemble) -> tuple[Member, Member]:
    leader = ens.wait_for_quorum()
    return leader, ens.followers()[0]


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_mntr_keys_and_quorum_values_match(ensembles, role) -> None:
    answers = {}
    for kind, ens in ensembles.items():
        leader, follower = _roles(ens)
        member = leader if role == "leader" else follower
        answers[kind] = (member, member.four_letter("mntr"))
    ref_member, ref = answers["zookeeper"]
    zk_member, ours = answers["zkpy"]
    # Per-learner summaries are named by the learners' ids: the same ids on both
    # sides only when the same server leads, so compare with ids normalised.
    def norm(keys: list[str], ids: list[int]) -> list[str]:
        for n, sid in enumerate(ids):
            keys = [k.replace(f"_{sid}_learner", f"_L{n}_learner") for k in keys]
        return keys

    def learner_ids(member: Member, ens: Ensemble) -> list[int]:
        return sorted(m.myid for m in ens.members if m is not member)

    assert norm(_keys(ours), learner_ids(zk_member, ensembles["zkpy"])) == norm(
        _keys(ref), learner_ids(ref_member, ensembles["zookeeper"]))
    mine, theirs = _values(ours), _values(ref)
    for key in ("zk_server_state", "zk_peer_state", "zk_quorum_size"):
        assert mine[key] == theirs[key], key
    if role == "leader":
        for key in ("zk_learners", "zk_synced_followers", "zk_synced_observers",
                    "zk_pending_syncs"):
            assert mine[key] == theirs[key], key


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_srvr_and_conf_match(ensembles, role) -> None:
    lines = {}
    confs = {}
    for kind, ens in ensembles.items():
        leader, follower = _roles(ens)
        member = leader if role == "leader" else follower
        srvr = member.four_letter("srvr").splitlines()
        lines[kind] = [line.split(":", 1)[0] for line in srvr]
        assert f"Mode: {role}" in srvr
        conf = _conf(member)
        confs[kind] = conf
        assert ("serverId", str(member.myid)) in conf
    assert lines["zkpy"] == lines["zookeeper"]
    ours, ref = confs["zkpy"], confs["zookeeper"]
    assert [k for k, _ in ours] == [k for k, _ in ref]
    for key in ("initLimit", "syncLimit", "electionAlg", "peerType", "version"):
        assert dict(ours)[key] == dict(ref)[key], key
    membership = [k for k, _ in ours if k.startswith("server.")]
    assert membership == ["server.1", "server.2", "server.3"]


def test_a_member_without_quorum_says_it_is_not_serving(ensembles) -> None:
    answers = {}
    for kind, ens in ensembles.items():
        for m in ens.members[1:]:
            m.stop()
        lone = ens.members[0]
        try:
            import time

            deadline = time.monotonic() + 30
            while lone.mode() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            answers[kind] = (lone.four_letter("srvr"), lone.four_letter("isro"),
                             lone.four_letter("ruok"))
        finally:
            for m in ens.members[1:]:
                m.start(wait=False)
            ens.wait_for_quorum(timeout=60)
    assert answers["zkpy"] == answers["zookeeper"]
    assert "not currently serving" in answers["zkpy"][0]
