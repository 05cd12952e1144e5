"""The fuzzers' short pass (issue 17), part of the unit suite.

Every in-memory target of ``zkpy.testing.fuzz`` (client port, quorum and
election ports, the ports' decoders, snapshots, the SNAP stream, data
directories, dynamic config files, the AdminServer) takes ``SMOKE`` inputs
from a fixed seed, so this pass is deterministic and takes seconds. Its
power is shown on planted bugs (two fixes of earlier findings taken back, and a
quorum link that forgets to tell Zab a connection closed): the same pass
catches each one, and the failure it reports replays from its
seed. The long run is ``tox -e fuzz``; what each target checks is in its
module's docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from zkpy.testing.fuzz.registry import TARGETS, fuzz_target
from zkpy.testing.fuzz.run import FuzzFailure, quiet

SMOKE = 150  # inputs per target: about 4 s for all of them on a busy machine
SEED = 0


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_input_keeps_the_contract(name: str) -> None:
    # The seeds are what the mutations start from: each must be taken as it is.
    target = TARGETS[name]
    subject = target.make()
    try:
        with quiet():
            seeds = target.seeds()
            assert seeds
            for data in seeds:
                subject.run(data)
    finally:
        close = getattr(subject, "close", None)
        if close is not None:
            close()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_short_pass_from_a_fixed_seed_keeps_the_contract(name: str) -> None:
    stats = fuzz_target(name, SEED, SMOKE)
    assert stats.inputs == SMOKE


# -- the pass catches what it is meant to catch --------------------------------------------


def _no_decode_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # Take back 87a006b: a logged txn whose checksum holds is trusted to decode.
    import zkpy.storage.recovery as recovery

    monkeypatch.setattr(recovery, "_check_decodes", lambda path, zxid, data: None)


def _keep_dialled_outsiders(monkeypatch: pytest.MonkeyPatch) -> None:
    # Take back 533cb7a: an outsider's election address outlives the dial back.
    from zkpy.net.peerlinks import ElectionLinks

    monkeypatch.setattr(ElectionLinks, "dial_ended",
                        lambda self, sid: self.connecting.discard(sid))


def _lost_connections_untold(monkeypatch: pytest.MonkeyPatch) -> None:
    # The quorum link forgets a closed connection without telling Zab, so the
    # leader keeps its learner. (Planted in zkpy.net, which the optional mypyc
    # accelerator leaves interpreted: a patched method of a compiled class would
    # not be called by compiled code.)
    from zkpy.net.peerlinks import QuorumLinks

    def lost(self: QuorumLinks, proto: object) -> None:
        sid = getattr(proto, "sid", None)
        if sid is not None and self.conns.get(sid) is proto:
            del self.conns[sid]

    monkeypatch.setattr(QuorumLinks, "lost", lost)


PLANTED: list[tuple[str, Callable[[pytest.MonkeyPatch], None], str]] = [
    ("datadir", _no_decode_check, "JuteError"),
    ("election", _keep_dialled_outsiders, "keeps an election address"),
    ("quorum", _lost_connections_untold, "keeps a learner"),
]


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    name, plant, _ = request.param
    plant(monkeypatch)
    yield name


@pytest.mark.parametrize(("planted", "expected"), [(p, p[2]) for p in PLANTED],
                         ids=[p[0] for p in PLANTED], indirect=["planted"])
def test_the_short_pass_catches_a_planted_bug_and_replays_it(planted: str,
                                                             expected: str) -> None:
    with pytest.raises(FuzzFailure, match=expected) as caught:
        fuzz_target(planted, SEED, SMOKE)
    found = caught.value
    assert f"python -m zkpy.testing.fuzz pure {planted} --seed {SEED} --count " \
           f"{found.index + 1}" in str(found)
    with pytest.raises(FuzzFailure) as again:  # the replay command's run
        fuzz_target(planted, SEED, found.index + 1)
    assert (again.value.index, again.value.data) == (found.index, found.data)
