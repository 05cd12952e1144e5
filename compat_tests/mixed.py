"""What the mixed-ensemble tests share (``test_mixed.py``,
``test_mixed_security.py``): the kinds, an ensemble of them that keeps its
logs when a test fails, who leads first, and what every member must hold."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kazoo.client import KazooClient

from compat_tests.ensembles import view, wait_until
from zkpy.testing.ensemble import Ensemble, Member

SESSION_TIMEOUT = 10.0
ZK, PY = "zookeeper", "zkpy"
#: ZooKeeper logs at INFO: a failing pairing's log tail says what it was doing
OPTIONS = {ZK: {"log_level": "info"}}


def start_led_by(ens: Ensemble, leader: int, timeout: float = 60,
                 only: Sequence[int] | None = None) -> None:
    """Start ``leader`` with the smallest other voter first (it wins their
    election: same zxid, larger myid), then everyone else (or the ``only``)."""
    first = [leader, min(m.myid for m in ens.members if m.myid != leader and not m.observer)]
    for myid in first:
        ens.member(myid).start(timeout=timeout, wait=False)
    wait_until(lambda: ens.member(leader).mode() == "leader", timeout,
               "member %d to lead\n%s" % (leader, ens.log_tails()))
    for m in ens.members:
        if not m.running and (only is None or m.myid in only):
            m.start(timeout=timeout, wait=False)
    ens.wait_for_quorum(timeout)
    got = ens.leader()
    assert got is not None and got.myid == leader, ens.modes()


def mixed(kinds: Sequence[str], observers: Sequence[int] = (),
          zookeeper_properties: dict[str, str] | None = None,
          properties: dict[str, str] | None = None, **kw: object) -> Ensemble:
    """Use in a ``with`` block: a failing test keeps the members' logs.
    ``properties``: -D settings for both kinds; ``zookeeper_properties``: for
    Apache ZooKeeper only."""
    options = {ZK: dict(OPTIONS[ZK], system_properties={**(properties or {}),
                                                        **(zookeeper_properties or {})}),
               PY: {"system_properties": dict(properties or {})}}
    return Ensemble(kinds, observers=observers, kind_options=options, **kw)  # type: ignore[arg-type]


def same_everywhere(connect: Callable[..., KazooClient], ens: Ensemble, path: str,
                    acked: set[str]) -> None:
    """Every running member holds every acknowledged write, and the same children."""
    seen = {}
    for m in ens.members:
        if m.running:
            seen[m.myid] = view(connect, m, path)
            missing = acked - seen[m.myid]
            assert not missing, "member %d (%s) lost %d acknowledged writes, e.g. %s" % (
                m.myid, m.kind, len(missing), sorted(missing)[:3])
    first = next(iter(seen.values()))
    assert all(s == first for s in seen.values()), {k: len(v) for k, v in seen.items()}


def server_log(member: Member) -> str:
    return member.server.log_text()
