"""What fuzzing found, one test per finding (issue 17).

Each test replays the shape of an input the fuzzers of ``zkpy.testing.fuzz``
found breaking the contract (a mutated input closes its connection or fails
its load with a clear message, and nothing else), through the same
harness, and checks the fixed behaviour.
"""

from __future__ import annotations

from zkpy.testing.fuzz.quorum import HostileWorld, _close, _connect, _feed, learner_stream


def test_a_leader_forgets_the_acks_of_a_server_outside_the_ensemble() -> None:
    # Found by the quorum target: every server id that ever connected and ACKed
    # kept a watermark on the leader, forever.
    world = HostileWorld()
    leader = world.wait_stable()
    for sid in (9, 10, 11):
        proto = _connect(world.fronts[leader.id][0])
        _feed(proto, world, learner_stream(sid), 0)
        assert sid in leader.peer.leading.acked  # it synced and ACKed as a learner
        _close(proto, world)
        assert sid not in leader.peer.leading.acked
    assert set(leader.peer.leading.acked) <= {1, 2, 3}
