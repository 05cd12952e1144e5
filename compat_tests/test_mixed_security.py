"""Mixed ensembles with quorum security: SASL (DIGEST-MD5) and TLS.

    pytest compat_tests/test_mixed_security.py

Apache ZooKeeper 3.8 and zkpy servers in one ensemble with
``quorum.auth.*Sasl=true`` or ``sslQuorum=true``: it elects, syncs and
survives a leader kill; a member with a wrong password, or a certificate of
another CA, is refused by the members of the other kind and never serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from compat_tests.ensembles import REFERENCE, Loader, clients, wait_until
from compat_tests.mixed import (
    PY,
    SESSION_TIMEOUT,
    ZK,
    mixed,
    same_everywhere,
    server_log,
    start_led_by,
)
from zkpy.testing.certs import CertificateAuthority

pytestmark = [pytest.mark.reference, REFERENCE]


@pytest.fixture
def connect() -> Iterator[Callable[..., KazooClient]]:
    yield from clients(SESSION_TIMEOUT)



QUORUM_JAAS = """
QuorumServer {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_quorum="%s";
};
QuorumLearner {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       username="quorum"
       password="%s";
};
"""
QUORUM_SASL = {"quorum.auth.enableSasl": "true", "quorum.auth.learnerRequireSasl": "true",
               "quorum.auth.serverRequireSasl": "true"}
REFUSED = {ZK: "Failed to authenticate using SASL", PY: "Quorum SASL: refusing"}
JAAS_PROPERTY = "java.security.auth.login.config"


@pytest.mark.parametrize("kinds", [
    pytest.param([ZK, PY, PY], id="zookeeper-among-zkpy"),
    pytest.param([PY, ZK, ZK], id="zkpy-among-zookeeper"),
])
def test_quorum_sasl_in_a_mixed_ensemble(kinds: list[str],
                                         connect: Callable[..., KazooClient]) -> None:
    """With quorum SASL required everywhere, the mixed ensemble elects, syncs
    and survives a leader kill; then member 1 comes back with a wrong
    password: the others (the other kind) refuse it and it never serves,
    until it has the right one again."""
    with mixed(kinds, settings=QUORUM_SASL) as ens:
        good = ens.workdir / "jaas.conf"
        good.write_text(QUORUM_JAAS % ("s3cret", "s3cret"))
        bad = ens.workdir / "jaas-bad.conf"
        bad.write_text(QUORUM_JAAS % ("s3cret", "guessed"))
        for m in ens.members:
            m.server.system_properties[JAAS_PROPERTY] = str(good)
        start_led_by(ens, 3)
        load = Loader(connect(ens.connect_string), "/load")
        load.start()
        wait_until(lambda: len(load.acked) >= 20, 30, "writes with quorum SASL")
        old = ens.member(3)
        old.kill()
        assert ens.wait_for_quorum(60).myid != 3  # either survivor may lead
        old.start(timeout=60, wait=False)
        ens.wait_for_quorum(60)

        intruder = ens.member(1)
        intruder.stop()
        judges = [m for m in ens.members if m is not intruder]
        marks = {m.myid: len(server_log(m)) for m in judges}
        intruder.server.system_properties[JAAS_PROPERTY] = str(bad)
        intruder.start(timeout=60, wait=False)
        wait_until(lambda: any(REFUSED[m.kind] in server_log(m)[marks[m.myid]:] for m in judges),
                   60, "the others to refuse member 1's password\n%s" % ens.log_tails())
        before = len(load.acked)
        wait_until(lambda: len(load.acked) > before + 20, 30, "writes without member 1")
        assert intruder.running and intruder.mode() is None  # it never got in

        intruder.stop()
        intruder.server.system_properties[JAAS_PROPERTY] = str(good)
        intruder.start(timeout=60, wait=False)
        ens.wait_for_quorum(60)
        load.stop()
        same_everywhere(connect, ens, "/load", load.names())


# --------------------------------------------------------------------------
# quorum TLS

#: what each kind logs when a peer's certificate is not trusted (ZooKeeper: the
#: accepted connection's handshake never agreed on a cipher suite)
UNTRUSTED = {ZK: "- NONE - SSL_NULL_WITH_NULL_NULL", PY: "Quorum TLS: the certificate of"}


@pytest.mark.parametrize("kinds", [
    pytest.param([ZK, PY, PY], id="zookeeper-among-zkpy"),
    pytest.param([PY, ZK, ZK], id="zkpy-among-zookeeper"),
])
def test_quorum_tls_in_a_mixed_ensemble(kinds: list[str],
                                        connect: Callable[..., KazooClient]) -> None:
    """With sslQuorum=true (mutual TLS, PEM stores signed by one CA, hostname
    verification on), the mixed ensemble elects, syncs and survives a leader
    kill; member 1 with a certificate of another CA is refused by the others
    (the other kind) and never serves, until it has a good one again."""
    with mixed(kinds) as ens:
        ca = CertificateAuthority("ensemble CA")
        good = ca.stores(ens.workdir, "member", "127.0.0.1")
        rogue = CertificateAuthority("rogue CA").stores(ens.workdir, "rogue", "127.0.0.1",
                                                        trust=ca)
        for m in ens.members:
            m.server.settings.update(good, sslQuorum="true")
        start_led_by(ens, 3)
        load = Loader(connect(ens.connect_string), "/load")
        load.start()
        wait_until(lambda: len(load.acked) >= 20, 30, "writes with quorum TLS")
        old = ens.member(3)
        old.kill()
        assert ens.wait_for_quorum(60).myid != 3  # either survivor may lead
        old.start(timeout=60, wait=False)
        ens.wait_for_quorum(60)

        intruder = ens.member(1)
        intruder.stop()
        judges = [m for m in ens.members if m is not intruder]
        marks = {m.myid: len(server_log(m)) for m in judges}
        intruder.server.settings.update(rogue)
        intruder.start(timeout=60, wait=False)
        wait_until(lambda: any(UNTRUSTED[m.kind] in server_log(m)[marks[m.myid]:]
                               for m in judges),
                   60, "the others to refuse member 1's certificate\n%s" % ens.log_tails())
        before = len(load.acked)
        wait_until(lambda: len(load.acked) > before + 20, 30, "writes without member 1")
        assert intruder.running and intruder.mode() is None

        intruder.stop()
        intruder.server.settings.update(good)
        intruder.start(timeout=60, wait=False)
        ens.wait_for_quorum(60)
        load.stop()
        same_everywhere(connect, ens, "/load", load.names())
