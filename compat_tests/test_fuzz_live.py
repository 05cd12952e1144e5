"""The live fuzzer's short pass (issue 17): real zkpy processes over sockets.

A standalone server (AdminServer on) and a 3-member ensemble take hostile
client connections (requests of every opcode after a real handshake, broken
framing, hostile handshakes), hostile quorum and election connections from
ids outside the ensemble, and hostile AdminServer requests, in two rounds;
after each round every server must still serve a client, the ensemble keep
its leader, nothing the hostile connections held be left over, and the
servers' memory stay bounded (``zkpy.testing.fuzz.live``). The issue's scale
(a million client frames, tens of thousands of quorum/election connections)
is ``tox -e fuzz``.
"""

from __future__ import annotations

from zkpy.testing.fuzz import live


def test_real_servers_keep_serving_after_a_hostile_flood_on_every_port() -> None:
    report = live.run(seed=0, frames=2000, connections=200, admin=60, rounds=2, workers=4)
    assert report.peer_connections == 200 and report.admin_requests == 60
    assert report.frames >= 2000 and report.client_connections > 0
    assert set(report.rss) == {"standalone", "member 1", "member 2", "member 3"}
    assert all(len(series) == 2 for series in report.rss.values())
