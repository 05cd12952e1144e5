"""Quorum TLS (sslQuorum=true, ssl.quorum.*): mutual TLS on the quorum and
election ports, over Twisted's memory-BIO TLS on in-memory connections.

A member whose certificate the trust store's CA signed gets through; one with
a certificate of another CA, or one that names another address (with
ssl.quorum.hostnameVerification, the default), is refused on either side.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from zkpy.net.peerlinks import QuorumLinks
from zkpy.net.quorumtls import QuorumTLS, TLSConfigError, certificate_names_host
from zkpy.testing.certs import CertificateAuthority
from zkpy.zab import messages as m


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority("ensemble CA")


def _store(tmp: Path, name: str, ca: CertificateAuthority, ip: str) -> dict[str, str]:
    return ca.stores(tmp, name, ip)


def _connect(learner_tls: QuorumTLS, leader_tls: QuorumTLS) -> list:
    """A learner connects to a leader's quorum port over TLS (both at 127.0.0.1)
    and sends FOLLOWERINFO; what the leader got."""
    got: list = []
    reactor = MemoryReactorClock()  # both sides' TLS flush their writes on its turns
    leader = QuorumLinks(reactor, 1, {}, lambda s, ps: got.extend((s, p) for p in ps),
                         lambda s: None)
    leader.tls = leader_tls
    learner = QuorumLinks(reactor, 2, {1: ("127.0.0.1", 2888)}, lambda s, p: None,
                          lambda s: None)
    learner.tls = learner_tls
    learner.send(1, m.follower_info(2, 1))
    client = reactor.tcpClients[0][2].buildProtocol(None)
    server = leader_tls.server_factory(leader, reactor).buildProtocol(None)
    here = IPv4Address("TCP", "127.0.0.1", 2888)
    there = IPv4Address("TCP", "127.0.0.1", 40000)
    pump = iosim.connect(server, iosim.FakeTransport(server, True, here, there),
                         client, iosim.FakeTransport(client, False, there, here))
    for _ in range(20):
        reactor.advance(0)
        pump.pump()
    return got


def test_members_with_certificates_of_the_trusted_ca_talk(tmp_path: Path, ca: CertificateAuthority) -> None:
    leader = QuorumTLS(_store(tmp_path, "one", ca, "127.0.0.1"))
    learner = QuorumTLS(_store(tmp_path, "two", ca, "127.0.0.1"))
    assert [(s, p.type) for s, p in _connect(learner, leader)] == [(2, m.FOLLOWERINFO)]


def test_a_certificate_of_another_ca_is_refused(tmp_path: Path, ca: CertificateAuthority) -> None:
    leader = QuorumTLS(_store(tmp_path, "one", ca, "127.0.0.1"))
    # The rogue trusts the real CA, so only the leader's check can stop it.
    rogue_settings = CertificateAuthority("another CA").stores(tmp_path, "rogue", "127.0.0.1",
                                                               trust=ca)
    assert _connect(QuorumTLS(rogue_settings), leader) == []


def test_a_certificate_for_another_address_is_refused(tmp_path: Path, ca: CertificateAuthority) -> None:
    leader = QuorumTLS(_store(tmp_path, "one", ca, "127.0.0.1"))
    elsewhere = QuorumTLS(_store(tmp_path, "two", ca, "10.9.8.7"))
    assert _connect(elsewhere, leader) == []
    # ...unless hostname verification is off.
    lenient = QuorumTLS({**_store(tmp_path, "three", ca, "127.0.0.1"),
                         "ssl.quorum.hostnameVerification": "false"})
    lax_learner = QuorumTLS({**_store(tmp_path, "four", ca, "10.9.8.7"),
                             "ssl.quorum.hostnameVerification": "false"})
    assert [p.type for _, p in _connect(lax_learner, lenient)] == [m.FOLLOWERINFO]


def test_settings_without_stores_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match="ssl.quorum.keyStore"):
        QuorumTLS({})


def test_certificate_names_host(tmp_path: Path, ca: CertificateAuthority) -> None:
    tls = QuorumTLS(_store(tmp_path, "one", ca, "127.0.0.1"))
    assert certificate_names_host(tls.chain[0], "127.0.0.1")
    assert not certificate_names_host(tls.chain[0], "127.0.0.2")
