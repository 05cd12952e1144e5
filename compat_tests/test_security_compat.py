"""The security behaviour of tests/test_security.py, on zkpy and on Apache ZooKeeper 3.8.

Each test runs against both servers (``kind``) with the same client code, so a
difference shows up as one parameter failing. The reference needs Java and the
Debian ZooKeeper jars; without them its half is skipped.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_security import (
    KEYTOOL,
    STOREPASS,
    Pki,
    connection_refused,
    jaas_file,
    kazoo,
    raw_request_without_auth,
    tls_client,
)
from zkpy.auth.acl import digest
from zkpy.jute.protocol import Err
from zkpy.testing.launchers import find_apache_zookeeper, free_port, server_from_name

KINDS = ["zkpy", pytest.param("zookeeper", marks=pytest.mark.reference)]
SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
X509_PROVIDER = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"


@pytest.fixture
def start() -> Any:
    started: list[Any] = []

    def run(kind: str, settings: dict[str, object] | None = None, **kw: Any) -> Any:
        if kind == "zookeeper":
            install, reason = find_apache_zookeeper()
            if install is None:
                pytest.skip(reason)
        srv = server_from_name(kind, settings=settings, **kw)
        started.append(srv)
        return srv.start(timeout=60)

    yield run
    for srv in started:
        srv.cleanup()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("kind", KINDS)
def test_session_require_client_sasl_auth(kind: str, start: Any, tmp_path: Path) -> None:
    srv = start(kind, {"sessionRequireClientSASLAuth": "true", "authProvider.1": SASL_PROVIDER},
                system_properties={"java.security.auth.login.config": jaas_file(tmp_path)})
    err, closed = raw_request_without_auth(srv.port)
    assert (err, closed) == (Err.SESSIONCLOSEDREQUIRESASLAUTH, True)
    good = kazoo(srv.connect_string, sasl_options={
        "mechanism": "DIGEST-MD5", "username": "bob", "password": "bob-secret"})
    try:
        good.create("/ok", b"1")
        assert good.get("/ok")[0] == b"1"
    finally:
        good.stop()
        good.close()


@pytest.mark.parametrize("kind", KINDS)
def test_sasl_bad_password_is_auth_failed(kind: str, start: Any, tmp_path: Path) -> None:
    import time

    from kazoo.client import KazooClient
    from kazoo.exceptions import AuthFailedError

    srv = start(kind, {"authProvider.1": SASL_PROVIDER},
                system_properties={"java.security.auth.login.config": jaas_file(tmp_path)})
    states: list[str] = []
    c = KazooClient(srv.connect_string, sasl_options={
        "mechanism": "DIGEST-MD5", "username": "alice", "password": "wrong"})
    c.add_listener(lambda st: states.append(st))
    try:
        c.start(timeout=15)
    except AuthFailedError:
        pass
    deadline = time.monotonic() + 15
    while c.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not c.connected and states[-1] == "LOST"
    c.stop()
    c.close()


@pytest.mark.parametrize("kind", KINDS)
def test_super_digest(kind: str, start: Any) -> None:
    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_digest_acl

    srv = start(kind, system_properties={
        "zookeeper.DigestAuthenticationProvider.superDigest": digest("super:letmein")})
    owner = kazoo(srv.connect_string, auth_data=[("digest", "u1:p1")])
    root = kazoo(srv.connect_string, auth_data=[("digest", "super:letmein")])
    other = kazoo(srv.connect_string)
    try:
        owner.create("/p", b"x", acl=[make_digest_acl("u1", "p1", read=True)])
        with pytest.raises(NoAuthError):
            other.get("/p")
        with pytest.raises(NoAuthError):
            owner.set("/p", b"y")
        root.set("/p", b"y")
        assert root.get("/p")[0] == b"y"
        root.delete("/p")
    finally:
        for c in (owner, root, other):
            c.stop()
            c.close()


@pytest.mark.parametrize("kind", KINDS)
def test_max_client_cnxns(kind: str, start: Any) -> None:
    srv = start(kind, {"maxClientCnxns": 2})
    clients = [kazoo(srv.connect_string) for _ in range(2)]
    try:
        assert connection_refused(srv.address)
        for i, c in enumerate(clients):
            c.create(f"/n{i}", b"")
    finally:
        for c in clients:
            c.stop()
            c.close()
    if kind == "zkpy":
        assert "Too many connections from 127.0.0.1 - max is 2" in srv.log_text()


@pytest.mark.reference
def test_x509_id_matches_java_x500principal(pki: Pki) -> None:
    """Java's X500Principal.getName() of the client certificates is zkpy's x509 id."""
    from OpenSSL import crypto

    from zkpy.net.tls import x509_id

    install, reason = find_apache_zookeeper()
    if install is None:
        pytest.skip(reason)
    source = Path(tempfile.mkdtemp()) / "Dn.java"
    source.write_text(
        "import java.io.FileInputStream;\nimport java.security.cert.*;\n"
        "public class Dn { public static void main(String[] a) throws Exception {\n"
        "  CertificateFactory f = CertificateFactory.getInstance(\"X.509\");\n"
        "  for (String p : a) { X509Certificate c = (X509Certificate) f.generateCertificate("
        "new FileInputStream(p));\n"
        "    System.out.println(c.getSubjectX500Principal().getName()); } } }\n")
    names = ["client", "intruder", "fancy"]
    out = subprocess.run([install.java, str(source), *(pki.path(f"{n}.crt") for n in names)],
                         capture_output=True, text=True, timeout=60, check=True)
    java = out.stdout.splitlines()
    ours = [x509_id(crypto.load_certificate(crypto.FILETYPE_PEM,
                                            Path(pki.path(f"{n}.crt")).read_bytes()))
            for n in names]
    assert ours == java


NETTY = {"zookeeper.serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory"}


def _secure_port(port: int, pki: Pki, extra: dict[str, object]) -> dict[str, object]:
    """Settings for a secure client port on ``port`` with the test PKI's stores."""
    if KEYTOOL is None:
        pytest.skip("keytool not installed")
    return {"secureClientPort": port, "ssl.clientAuth": "want",
            "ssl.keyStore.location": str(pki.jks("server")), "ssl.keyStore.password": STOREPASS,
            "ssl.trustStore.location": str(pki.jks("trust")),
            "ssl.trustStore.password": STOREPASS, **extra}


@pytest.mark.parametrize("kind", KINDS)
def test_tls_x509_acl(kind: str, start: Any, pki: Pki) -> None:
    from kazoo.exceptions import NoAuthError
    from kazoo.security import ACL, Id

    port = free_port()
    start(kind, _secure_port(port, pki, {"authProvider.x509": X509_PROVIDER}),
          system_properties=NETTY)
    owner = tls_client(port, pki, "client")
    intruder = tls_client(port, pki, "intruder")
    anonymous = tls_client(port, pki, None)
    try:
        owner.create("/mine", b"s", acl=[ACL(31, Id("x509", "CN=client,O=zkpy"))])
        assert owner.get("/mine")[0] == b"s"
        for other in (intruder, anonymous):
            with pytest.raises(NoAuthError):
                other.get("/mine")
    finally:
        for c in (owner, intruder, anonymous):
            c.stop()
            c.close()



@pytest.mark.parametrize("kind", KINDS)
def test_netty_connection_figures(kind: str, start: Any, pki: Pki) -> None:
    """NettyServerCnxnFactory's mntr figures: each plain connection counts as a
    non-mTLS one (local from 127.0.0.1, mntr's own included), a TLS one does not,
    and a finished TLS handshake leaves no outstanding one behind."""
    port = free_port()
    srv = start(kind, _secure_port(port, pki, {"4lw.commands.whitelist": "*",
                                               "netty.server.outstandingHandshake.limit": 5}),
                system_properties=NETTY)

    def values() -> dict[str, str]:
        return dict(line.split("\t", 1) for line in srv.four_letter("mntr").splitlines()
                    if "\t" in line)

    def figures() -> tuple[int, int, int]:
        found = values()
        return (int(found["zk_non_mtls_local_conn_count"]),
                int(found["zk_non_mtls_remote_conn_count"]),
                int(found["zk_outstanding_tls_handshake"]))

    local, remote, _ = figures()
    secure = tls_client(port, pki, "client")
    try:
        secure.create("/tls", b"1")
        assert figures() == (local + 1, remote, 0)  # mntr's connection only
        plain = kazoo(srv.connect_string)
        try:
            plain.get("/tls")
            assert figures() == (local + 3, remote, 0)  # the client's and mntr's
        finally:
            plain.stop()
            plain.close()
    finally:
        secure.stop()
        secure.close()
    # A client speaking plain ZooKeeper to the secure port: its handshake fails,
    # an unsuccessful handshake and an authentication failure.
    before = values()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", 44) + bytes(44))  # a ConnectRequest's frame, no TLS
        while sock.recv(4096):  # until the server closes it
            pass

    def failures() -> tuple[int, int]:
        found = values()
        return (int(found["zk_unsuccessful_handshake"]) - int(before["zk_unsuccessful_handshake"]),
                int(found["zk_auth_failed_count"]) - int(before["zk_auth_failed_count"]))

    deadline = time.monotonic() + 10
    while failures() != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.05)  # the server counts it as it notices the close
    assert failures() == (1, 1)
