"""Quorum SASL (DIGEST-MD5 between ensemble members), as ZooKeeper 3.8 runs it.

The handshakes of ``zkpy.auth.quorum_sasl`` byte by byte (QuorumAuthPacket
with ZooKeeper's magic, IN_PROGRESS / SUCCESS / ERROR), the settings read
from zoo.cfg keys and the JAAS file, and the adapter (``zkpy.net.peerlinks``)
running them before a quorum or election connection carries anything else:
a learner with the right password gets through, one with a wrong password
or none at all is refused when the server requires SASL.
"""

from __future__ import annotations

import struct

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from zkpy.auth import quorum_sasl as q
from zkpy.net.peerlinks import ElectionLinks, QuorumLinks
from zkpy.zab import messages as m
from zkpy.zab.election import LOOKING, Notification

JAAS = '''
QuorumServer {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_test="secret";
};
QuorumLearner {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       username="test"
       password="%s";
};
'''
ON = {"quorum.auth.enableSasl": "true", "quorum.auth.learnerRequireSasl": "true",
      "quorum.auth.serverRequireSasl": "true"}


def _sasl(password: str = "secret", **settings: str) -> q.QuorumSasl:
    return q.QuorumSasl.from_settings({**ON, **settings}, JAAS % password)


def test_settings_come_from_zoo_cfg_and_the_jaas_sections() -> None:
    auth = _sasl()
    assert (auth.enabled, auth.learner_required, auth.server_required) == (True, True, True)
    assert auth.users == {"test": "secret"} and auth.login == ("test", "secret")
    assert not q.QuorumSasl.from_settings({}, JAAS % "x").enabled
    with pytest.raises(ValueError, match="QuorumLearner"):
        q.QuorumSasl.from_settings(ON, "QuorumServer { x required user_a=\"b\"; };")


def _exchange(learner: q.LearnerHandshake, server: q.ServerHandshake) -> list[bytes]:
    """Run both sides to the end; every packet that went over the wire."""
    wire = [learner.first()]
    while not learner.done:
        out, _ = server.feed(wire[-1], 0)
        wire.append(out)
        answer, _ = learner.feed(out, 0)
        if answer:
            wire.append(answer)
    return wire


def test_the_handshake_is_zookeepers() -> None:
    wire = _exchange(q.LearnerHandshake("test", "secret", "c0ffee"), q.ServerHandshake({"test": "secret"}, "fee1dead"))
    heads = [struct.unpack_from(">qi", p) for p in wire]
    # QuorumAuthPacket: the magic, then IN_PROGRESS / challenge / response / SUCCESS.
    assert [h[0] for h in heads] == [0x5F2435013501EDCC] * 4
    assert [h[1] for h in heads] == [q.IN_PROGRESS, q.IN_PROGRESS, q.IN_PROGRESS, q.SUCCESS]
    assert wire[0] == struct.pack(">qii", 0x5F2435013501EDCC, 0, 0)
    assert b'realm="zk-quorum-sasl-md5"' in wire[1]
    assert b'digest-uri="zookeeper-quorum/zk-quorum-sasl-md5"' in wire[2]
    assert wire[3][16:].startswith(b"rspauth=")


def test_a_wrong_password_ends_in_error_on_both_sides() -> None:
    learner, server = q.LearnerHandshake("test", "wrong", "c0ffee"), q.ServerHandshake({"test": "secret"}, "fee1dead")
    challenge, _ = server.feed(learner.first(), 0)
    response, _ = learner.feed(challenge, 0)
    with pytest.raises(q.QuorumAuthError) as refused:
        server.feed(response, 0)
    assert refused.value.reply == struct.pack(">qii", 0x5F2435013501EDCC, -1, 0)
    with pytest.raises(q.QuorumAuthError):
        learner.feed(refused.value.reply, 0)


def test_a_server_that_does_not_know_us_cannot_fake_success() -> None:
    learner = q.LearnerHandshake("test", "secret", "c0ffee")
    impostor = q.ServerHandshake({"test": "other"}, "fee1dead")
    challenge, _ = impostor.feed(learner.first(), 0)
    learner.feed(challenge, 0)
    forged = q.auth_packet(q.SUCCESS, b"rspauth=00000000000000000000000000000000")
    with pytest.raises(q.QuorumAuthError, match="rspauth"):
        learner.feed(forged, 0)


# -- on connections -----------------------------------------------------------------------


def _quorum_pair(learner_auth: q.QuorumSasl, leader_auth: q.QuorumSasl) -> tuple[list, object]:
    """A learner's QuorumLinks connected to a leader's; what the leader got."""
    got: list = []
    leader = QuorumLinks(None, 1, {}, lambda s, ps: got.extend((s, p) for p in ps),
                         lambda s: None)
    leader.auth = leader_auth
    reactor = MemoryReactorClock()
    learner = QuorumLinks(reactor, 2, {1: ("127.0.0.1", 2888)}, lambda s, p: None,
                          lambda s: None)
    learner.auth = learner_auth
    learner.send(1, m.follower_info(2, 1))
    client = reactor.tcpClients[0][2].buildProtocol(None)
    server = leader.buildProtocol(None)
    pump = iosim.connect(server, iosim.FakeTransport(server, True), client,
                         iosim.FakeTransport(client, False))
    pump.flush()
    return got, server


def test_a_learner_with_the_password_reaches_the_leader() -> None:
    got, _ = _quorum_pair(_sasl(), _sasl())
    assert [(s, p.type) for s, p in got] == [(2, m.FOLLOWERINFO)]


@pytest.mark.parametrize("learner", [
    pytest.param(_sasl("wrong"), id="wrong-password"),
    pytest.param(q.QuorumSasl(), id="no-sasl"),
])
def test_a_learner_without_valid_credentials_is_refused(learner: q.QuorumSasl) -> None:
    got, server = _quorum_pair(learner, _sasl())
    assert got == [] and server.transport.disconnecting


def test_a_server_that_does_not_require_sasl_takes_a_plain_learner() -> None:
    got, _ = _quorum_pair(q.QuorumSasl(), _sasl(**{"quorum.auth.serverRequireSasl": "false"}))
    assert [p.type for _, p in got] == [m.FOLLOWERINFO]


def _election_pair(dialer: q.QuorumSasl, listener: q.QuorumSasl) -> list:
    """Server 2 connects to server 1's election port (1 keeps the connection:
    the larger id connected) and votes; what 1 heard."""
    heard: list = []
    one = ElectionLinks(None, 1, {1: ("127.0.0.1", 3001)}, lambda s, n, c: heard.append((s, n)))
    one.auth = listener
    reactor = MemoryReactorClock()
    two = ElectionLinks(reactor, 2, {1: ("127.0.0.1", 3001), 2: ("127.0.0.1", 3002)},
                        lambda s, n, c: None)
    two.auth = dialer
    two.send(1, Notification(2, LOOKING, 2, 0, 1, 0))
    client = reactor.tcpClients[0][2].buildProtocol(None)
    server = one.buildProtocol(None)
    iosim.connect(server, iosim.FakeTransport(server, True), client,
                  iosim.FakeTransport(client, False)).flush()
    return heard


def test_election_connections_authenticate_after_the_initial_message() -> None:
    assert [s for s, _ in _election_pair(_sasl(), _sasl())] == [2]
    assert _election_pair(_sasl("wrong"), _sasl()) == []
    assert _election_pair(q.QuorumSasl(), _sasl()) == []
