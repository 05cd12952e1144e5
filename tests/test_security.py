"""Security: SASL DIGEST-MD5, enforced authentication, TLS key stores and x509 ids,
super users, skipACL, maxClientCnxns and a flooding client.

The first half drives the pure core in-process (no sockets); the second half
runs real ``python -m zkpy`` processes (``ZkpyServer``) and talks to them with
Kazoo, raw sockets and, where Java is installed, ``zkCli.sh``.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from puresasl.client import SASLClient

from tests.zk_harness import connected, frame, make_core
from zkpy.auth.acl import digest
from zkpy.config import ConfigError, parse_config_text
from zkpy.jute import schema as S
from zkpy.jute.codec import decode, decode_all
from zkpy.jute.protocol import Err, Op

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


# ---------------------------------------------------------------------------
# in-process: SASL and enforced authentication


def sasl_exchange(c: Any, user: str, password: str) -> tuple[Any, bytes]:
    """Run Kazoo's DIGEST-MD5 exchange over the harness; the last (header, body)."""
    cli = SASLClient("zk-sasl-md5", service="zookeeper", mechanism="DIGEST-MD5",
                     username=user, password=password)
    challenge = None
    hdr: Any = None
    body = b""
    while not cli.complete:
        response = cli.process(challenge=challenge) or b""
        if cli.complete and not response:
            break
        xid = c.submit(Op.sasl, S.GetSASLRequest(response))
        (hdr, body), = c.replies()
        assert hdr.xid == xid
        if hdr.err:
            return hdr, body
        challenge = decode_all(S.SetSASLResponse, body).token
        if challenge is None:  # a failure the server let pass (allowSaslFailedClients)
            break
    return hdr, body


def sasl_core(**kw: Any) -> Any:
    return make_core(sasl_users=dict(USERS), **kw)


def test_sasl_good_password_gives_sasl_id_and_zxid_zero_replies() -> None:
    core = sasl_core()
    c = connected(core)
    hdr, _ = sasl_exchange(c, "alice", "alice-secret")
    assert hdr.err == 0 and hdr.zxid == 0  # processSasl answers with zxid 0
    assert S.Id("sasl", "alice") in c.conn.ids
    assert not c.closed


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("mallory", "x")])
def test_sasl_failure_is_authfailed_with_null_token_then_closed(user: str, password: str) -> None:
    core = sasl_core()
    c = connected(core)
    hdr, body = sasl_exchange(c, user, password)
    assert hdr.err == Err.AUTHFAILED and hdr.zxid == 0
    assert decode_all(S.SetSASLResponse, body).token is None
    assert c.closed
    assert not any(i.scheme == "sasl" for i in c.conn.ids)


def test_sasl_failure_when_required_is_session_closed_require_sasl() -> None:
    core = sasl_core(enforce_auth_schemes=("sasl",))
    c = connected(core)
    hdr, _ = sasl_exchange(c, "alice", "nope")
    assert hdr.err == Err.SESSIONCLOSEDREQUIRESASLAUTH
    assert c.closed


def test_allow_sasl_failed_clients_keeps_the_connection() -> None:
    core = sasl_core(allow_sasl_failed_clients=True)
    c = connected(core)
    hdr, _ = sasl_exchange(c, "alice", "nope")
    assert hdr.err == 0 and not c.closed
    assert c.exists("/") == 0


def test_sasl_acl_admits_only_that_user() -> None:
    core = sasl_core()
    alice = connected(core)
    assert sasl_exchange(alice, "alice", "alice-secret")[0].err == 0
    acl = [S.ACL(31, S.Id("sasl", "alice"))]
    assert alice.create("/a", b"x", acl) == 0
    assert alice.get("/a")[0] == 0
    bob = connected(core)
    assert sasl_exchange(bob, "bob", "bob-secret")[0].err == 0
    assert bob.get("/a")[0] == Err.NOAUTH
    anon = connected(core)
    assert anon.get("/a")[0] == Err.NOAUTH


def test_session_require_sasl_refuses_unauthenticated_requests() -> None:
    core = sasl_core(enforce_auth_schemes=("sasl",))
    c = connected(core)  # the session is created: ZooKeeper checks requests, not connects
    xid = c.submit(Op.getData, S.GetDataRequest("/", False))
    (hdr, body), = c.replies()
    assert (hdr.xid, hdr.zxid, hdr.err, body) == (xid, 0, Err.SESSIONCLOSEDREQUIRESASLAUTH, b"")
    assert c.closed
    # nothing more is read from it
    c.conn.receive(frame(S.RequestHeader(9, Op.exists), S.ExistsRequest("/", False)), c.now)
    assert c.replies() == []


def test_session_require_sasl_pings_are_refused_too() -> None:
    core = sasl_core(enforce_auth_schemes=("sasl",))
    c = connected(core)
    c.submit(Op.ping, xid=-2)
    (hdr, _), = c.replies()
    assert hdr.err == Err.SESSIONCLOSEDREQUIRESASLAUTH and c.closed


def test_session_require_sasl_lets_authenticated_sessions_work() -> None:
    core = sasl_core(enforce_auth_schemes=("sasl",))
    c = connected(core)
    assert sasl_exchange(c, "bob", "bob-secret")[0].err == 0
    assert c.create("/b") == 0
    assert c.get("/b")[0] == 0


def test_enforce_auth_digest_scheme() -> None:
    core = make_core(enforce_auth_schemes=("digest", "sasl"))
    ok = connected(core)
    (hdr, _), = ok.add_auth("digest", b"u:p")
    assert hdr.err == 0
    assert ok.exists("/") == 0
    bad = connected(core)
    (hdr, _), = bad.add_auth("ip", b"")  # an ip id does not count
    assert hdr.err == 0
    assert bad.exists("/") == Err.SESSIONCLOSEDREQUIRESASLAUTH
    assert bad.closed


def cfg_with(text: str, tmp_path: Path, **props: str) -> Any:
    from zkpy.__main__ import settings_from

    cfg = parse_config_text(f"dataDir={tmp_path}\nclientPort=2181\n{text}", props)
    return settings_from(cfg)


def jaas_file(tmp_path: Path) -> str:
    path = tmp_path / "jaas.conf"
    users = "\n".join(f'    user_{u}="{p}"' for u, p in USERS.items())
    path.write_text("Server {\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n"
                    f"{users};\n}};\n")
    return str(path)


def test_config_session_require_sasl_from_zoo_cfg_and_property(tmp_path: Path) -> None:
    jaas = jaas_file(tmp_path)
    s = cfg_with("sessionRequireClientSASLAuth=true", tmp_path,
                 **{"java.security.auth.login.config": jaas})
    assert s.enforce_auth_schemes == ("sasl",)
    s = cfg_with("", tmp_path, **{"java.security.auth.login.config": jaas,
                                  "zookeeper.sessionRequireClientSASLAuth": "TRUE"})
    assert s.enforce_auth_schemes == ("sasl",)
    s = cfg_with("enforce.auth.enabled=true\nenforce.auth.schemes=digest, sasl", tmp_path,
                 **{"java.security.auth.login.config": jaas})
    assert s.enforce_auth_schemes == ("digest", "sasl")
    assert cfg_with("enforce.auth.schemes=digest", tmp_path).enforce_auth_schemes == ()


def test_config_enforce_auth_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="zookeeper.sessionRequireClientSASLAuth.*sasl"):
        cfg_with("sessionRequireClientSASLAuth=true", tmp_path)  # no SASL configured
    with pytest.raises(ConfigError, match="zookeeper.enforce.auth.schemes"):
        cfg_with("enforce.auth.enabled=true", tmp_path)
    with pytest.raises(ConfigError, match="zookeeper.enforce.auth.schemes.*kerberos"):
        cfg_with("enforce.auth.enabled=true\nenforce.auth.schemes=kerberos", tmp_path)


# ---------------------------------------------------------------------------
# in-process: super digest and skipACL


def test_super_digest_bypasses_every_acl() -> None:
    core = make_core(super_digest=digest("super:letmein"))
    owner = connected(core)
    owner.add_auth("digest", b"u1:p1")
    assert owner.create("/locked", b"x", [S.ACL(31, S.Id("digest", digest("u1:p1")))]) == 0
    assert owner.create("/locked/none", b"x", [S.ACL(1, S.Id("digest", digest("u1:p1")))]) == 0
    other = connected(core)
    assert other.get("/locked")[0] == Err.NOAUTH
    root = connected(core)
    (hdr, _), = root.add_auth("digest", b"super:letmein")
    assert hdr.err == 0
    assert root.get("/locked")[0] == 0
    assert root.set("/locked/none", b"y") == 0
    assert root.delete("/locked/none") == 0
    wrong = connected(core)
    wrong.add_auth("digest", b"super:wrong")
    assert wrong.get("/locked")[0] == Err.NOAUTH


def test_skip_acl_disables_checks() -> None:
    core = make_core(skip_acl=True)
    c = connected(core)
    assert c.create("/n", b"x", [S.ACL(31, S.Id("digest", digest("u:p")))]) == 0
    assert connected(core).get("/n")[0] == 0
    assert connected(core).set("/n", b"z") == 0


def test_x509_acls_exist_only_with_tls() -> None:
    acl = [S.ACL(31, S.Id("x509", "CN=client,O=zkpy"))]
    assert connected(make_core()).create("/x", b"", acl) == Err.INVALIDACL
    core = make_core(x509_enabled=True)
    c = connected(core)
    assert c.create("/x", b"", acl) == 0
    assert c.get("/x")[0] == Err.NOAUTH
    c.conn.ids.append(S.Id("x509", "CN=client,O=zkpy"))
    assert c.get("/x")[0] == 0


# ---------------------------------------------------------------------------
# certificates and key stores (module-scoped, made once)

KEYTOOL = shutil.which("keytool")
STOREPASS = "storepass"


def _name(**attrs: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME,
            "email": NameOID.EMAIL_ADDRESS}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])


def _issue(subject: Any, issuer: Any, issuer_key: Any, key: Any, ca: bool = False,
           san: bool = False) -> Any:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


class Pki:
    """A CA, a server certificate and client certificates, as PEM, PKCS12 and JKS files."""

    def __init__(self, root: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import pkcs12

        self.root = root
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name(O="zkpy", CN="zkpy test CA")
        ca = _issue(ca_name, ca_name, ca_key, ca_key, ca=True)
        self.ca_pem = root / "ca.pem"
        self.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.subjects = {
            "server": _name(O="zkpy", CN="localhost"),
            "client": _name(O="zkpy", CN="client"),
            "intruder": _name(O="zkpy", CN="intruder"),
            # a DN with an escaped comma and an attribute X500Principal writes as an OID
            "fancy": _name(C="US", O="Acme, Inc.", OU="ops", CN="fancy", email="f@example.com"),
        }
        for who, subject in self.subjects.items():
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue(subject, ca_name, ca_key, key, san=(who == "server"))
            key_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            cert_pem = cert.public_bytes(serialization.Encoding.PEM)
            (root / f"{who}.key").write_bytes(key_pem)
            (root / f"{who}.crt").write_bytes(cert_pem)
            (root / f"{who}.pem").write_bytes(key_pem + cert_pem)
            (root / f"{who}.p12").write_bytes(pkcs12.serialize_key_and_certificates(
                who.encode(), key, cert, [ca],
                serialization.BestAvailableEncryption(STOREPASS.encode())))
        self._jks: dict[str, Path] = {}

    def path(self, name: str) -> str:
        return str(self.root / name)

    def jks(self, who: str) -> Path:
        """``<who>.jks`` made by keytool from the PKCS12 file (or trust.jks for the CA)."""
        assert KEYTOOL is not None
        if who in self._jks:
            return self._jks[who]
        out = self.root / f"{who}.jks"
        if who == "trust":
            cmd = [KEYTOOL, "-importcert", "-noprompt", "-alias", "ca", "-file",
                   str(self.ca_pem), "-keystore", str(out), "-storetype", "JKS",
                   "-storepass", STOREPASS]
        else:
            cmd = [KEYTOOL, "-importkeystore", "-noprompt", "-srckeystore",
                   str(self.root / f"{who}.p12"), "-srcstoretype", "PKCS12",
                   "-srcstorepass", STOREPASS, "-destkeystore", str(out),
                   "-deststoretype", "JKS", "-deststorepass", STOREPASS,
                   "-destkeypass", STOREPASS]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        self._jks[who] = out
        return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_x509_id_is_rfc2253_as_x500principal(pki: Pki) -> None:
    from OpenSSL import crypto

    from zkpy.net.tls import x509_id

    def ident(who: str) -> str | None:
        return x509_id(crypto.load_certificate(crypto.FILETYPE_PEM,
                                               (pki.root / f"{who}.crt").read_bytes()))

    assert ident("client") == "CN=client,O=zkpy"
    # emailAddress is no RFC 2253 keyword: X500Principal writes OID=#<DER hex>
    assert ident("fancy") == ("1.2.840.113549.1.9.1=#160d66406578616d706c652e636f6d,CN=fancy,"
                              "OU=ops,O=Acme\\, Inc.,C=US")
    assert x509_id(None) is None


# ---------------------------------------------------------------------------
# real servers


def zkpy_server(settings: dict[str, object] | None = None, **kw: Any) -> Any:
    from zkpy.testing.launchers import ZkpyServer

    return ZkpyServer(settings, **kw)


@pytest.fixture
def servers() -> Any:
    started: list[Any] = []

    def start(settings: dict[str, object] | None = None, **kw: Any) -> Any:
        srv = zkpy_server(settings, **kw)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.cleanup()


def kazoo(hosts: str, **kw: Any) -> Any:
    from kazoo.client import KazooClient

    kw.setdefault("timeout", 10)
    client = KazooClient(hosts=hosts, connection_retry={"max_tries": 0}, **kw)
    client.start(timeout=15)
    return client


def tls_settings(pki: Pki, kind: str, client_auth: str | None) -> dict[str, object]:
    from zkpy.testing.launchers import free_port

    stores = {
        "PEM": (pki.path("server.pem"), pki.path("ca.pem")),
        "PKCS12": (pki.path("server.p12"), pki.path("client.p12")),
        "JKS": (str(pki.jks("server")) if KEYTOOL else "", str(pki.jks("trust")) if KEYTOOL else ""),
    }[kind]
    s: dict[str, object] = {
        "secureClientPort": free_port(),
        "ssl.keyStore.location": stores[0], "ssl.keyStore.password": STOREPASS,
        "ssl.trustStore.location": stores[1], "ssl.trustStore.password": STOREPASS,
    }
    if kind == "PKCS12":
        # a PKCS12 trust store holding the CA: the client's store carries it in its chain
        s["ssl.trustStore.location"] = pki.path("client.p12")
    if client_auth is not None:
        s["ssl.clientAuth"] = client_auth
    return s


def tls_client(port: int, pki: Pki, who: str | None, **kw: Any) -> Any:
    certs = {}
    if who is not None:
        certs = {"certfile": pki.path(f"{who}.crt"), "keyfile": pki.path(f"{who}.key")}
    return kazoo(f"127.0.0.1:{port}", use_ssl=True, ca=pki.path("ca.pem"), verify_certs=True,
                 **certs, **kw)


def raw_tls_connect(port: int, pki: Pki, who: str | None) -> bytes:
    """TLS handshake + ConnectRequest; the server's first bytes (b'' if it closed)."""
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.check_hostname = False
    if who is not None:
        ctx.load_cert_chain(pki.path(f"{who}.crt"), pki.path(f"{who}.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            s.sendall(frame(S.ConnectRequest(0, 0, 10000, 0, bytes(16), False)))
            try:
                return s.recv(4096)
            except (ssl.SSLError, ConnectionResetError):
                return b""


@pytest.mark.parametrize("kind", ["PEM", "PKCS12", "JKS"])
def test_tls_key_store_formats_and_client_auth_need(kind: str, pki: Pki, servers: Any) -> None:
    if kind == "JKS" and KEYTOOL is None:
        pytest.skip("keytool (Java) is not installed")
    settings = tls_settings(pki, kind, "need")
    srv = servers(settings)
    port = int(settings["secureClientPort"])  # type: ignore[call-overload]
    client = tls_client(port, pki, "client")
    try:
        client.create("/tls", b"over tls")
        assert client.get("/tls")[0] == b"over tls"
    finally:
        client.stop()
        client.close()
    # need: no client certificate, no session
    assert raw_tls_connect(port, pki, None) == b""
    assert len(raw_tls_connect(port, pki, "client")) > 4
    assert srv.running
    assert "Warning" not in srv.log_text()  # no LegacyContextFactoryWarning at start


def test_server_tls_is_a_connection_creator_twisted_takes_without_warning(pki: Pki) -> None:
    import warnings

    from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
    from twisted.internet.protocol import Factory
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from zkpy.net.tls import ServerTLS

    settings = tls_settings(pki, "PEM", "need")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tls = ServerTLS({k: str(v) for k, v in settings.items() if k.startswith("ssl.")})
        assert IOpenSSLServerConnectionCreator.providedBy(tls)
        TLSMemoryBIOFactory(tls, False, Factory())


def test_tls_client_auth_want_and_none(pki: Pki, servers: Any) -> None:
    want = tls_settings(pki, "PEM", "want")
    servers(want)
    port = int(want["secureClientPort"])  # type: ignore[call-overload]
    for who in (None, "client"):
        c = tls_client(port, pki, who)
        assert c.exists("/") is not None
        c.stop()
        c.close()
    none = tls_settings(pki, "PEM", "none")
    srv = servers(none)
    port = int(none["secureClientPort"])  # type: ignore[call-overload]
    c = tls_client(port, pki, "client")
    assert c.exists("/") is not None
    c.stop()
    c.close()
    # none: the certificate is never asked for, so no x509 id
    assert "authenticated as x509" not in srv.log_text()


def test_x509_acl_lets_the_certificate_holder_in(pki: Pki, servers: Any) -> None:
    from kazoo.exceptions import NoAuthError
    from kazoo.security import ACL, Id

    settings = tls_settings(pki, "PEM", "want")
    srv = servers(settings)
    port = int(settings["secureClientPort"])  # type: ignore[call-overload]
    owner = tls_client(port, pki, "client")
    intruder = tls_client(port, pki, "intruder")
    anonymous = tls_client(port, pki, None)
    plain = kazoo(srv.connect_string)
    try:
        owner.create("/mine", b"secret", acl=[ACL(31, Id("x509", "CN=client,O=zkpy"))])
        assert owner.get("/mine")[0] == b"secret"
        for other in (intruder, anonymous, plain):
            with pytest.raises(NoAuthError):
                other.get("/mine")
        assert "authenticated as x509:CN=client,O=zkpy" in srv.log_text()
    finally:
        for c in (owner, intruder, anonymous, plain):
            c.stop()
            c.close()


@pytest.mark.parametrize("key,value", [
    ("ssl.clientAuth", "sometimes"),
    ("ssl.keyStore.password", "wrong-password"),
    ("ssl.keyStore.location", "/nonexistent/server.pem"),
    ("ssl.enabledProtocols", "SSLv1"),
])
def test_bad_ssl_setting_stops_start_up_naming_the_key(key: str, value: str, pki: Pki) -> None:
    from zkpy.testing.launchers import ServerError

    settings = tls_settings(pki, "PKCS12", "need")
    settings[key] = value
    srv = zkpy_server(settings)
    try:
        with pytest.raises(ServerError):
            srv.start(timeout=20)
        assert srv.returncode not in (None, 0)
        shown = "ssl.keyStore.location" if key == "ssl.keyStore.password" else key
        assert shown in srv.log_text()
    finally:
        srv.cleanup()


def test_java_cli_over_tls(pki: Pki, servers: Any) -> None:
    """zkCli.sh with the Netty client socket and JKS stores runs `ls /` over TLS."""
    zkcli = "/usr/share/zookeeper/bin/zkCli.sh"
    if KEYTOOL is None or not os.path.exists(zkcli):
        pytest.skip("zkCli.sh / keytool not installed")
    settings = tls_settings(pki, "JKS", "need")
    servers(settings)
    port = int(settings["secureClientPort"])  # type: ignore[call-overload]
    env = dict(os.environ)
    # zkEnv.sh fixes CLASSPATH and zookeeper.jar's manifest lacks netty's codec and resolver:
    # a later -cp in CLIENT_JVMFLAGS replaces the script's.
    cp = ":".join(["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar",
                   *(f"/usr/share/java/netty-{j}.jar" for j in (
                       "codec", "resolver", "transport", "handler", "buffer", "common",
                       "transport-native-epoll", "transport-native-unix-common"))])
    env["CLIENT_JVMFLAGS"] = " ".join([
        f"-cp {cp}",
        "-Dzookeeper.client.secure=true",
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
        f"-Dzookeeper.ssl.keyStore.location={pki.jks('client')}",
        f"-Dzookeeper.ssl.keyStore.password={STOREPASS}",
        f"-Dzookeeper.ssl.trustStore.location={pki.jks('trust')}",
        f"-Dzookeeper.ssl.trustStore.password={STOREPASS}",
    ])
    out = subprocess.run([zkcli, "-waitforconnection", "-timeout", "30000",
                          "-server", f"127.0.0.1:{port}", "ls", "/"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert "[zookeeper]" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def sasl_kazoo(srv: Any, user: str, password: str) -> Any:
    return kazoo(srv.connect_string, sasl_options={
        "mechanism": "DIGEST-MD5", "username": user, "password": password})


def test_sasl_digest_md5_with_kazoo(servers: Any, tmp_path: Path) -> None:
    from kazoo.exceptions import AuthFailedError, NoAuthError
    from kazoo.security import ACL, Id

    srv = servers(system_properties={"java.security.auth.login.config": jaas_file(tmp_path)})
    alice = sasl_kazoo(srv, "alice", "alice-secret")
    bob = sasl_kazoo(srv, "bob", "bob-secret")
    try:
        alice.create("/alice", b"a", acl=[ACL(31, Id("sasl", "alice"))])
        assert alice.get("/alice")[0] == b"a"
        with pytest.raises(NoAuthError):
            bob.get("/alice")
    finally:
        for c in (alice, bob):
            c.stop()
            c.close()
    from kazoo.client import KazooClient

    for user, password in (("alice", "wrong"), ("mallory", "x")):
        c = KazooClient(srv.connect_string, sasl_options={
            "mechanism": "DIGEST-MD5", "username": user, "password": password})
        try:  # the server answers AUTHFAILED: Kazoo gives up (AUTH_FAILED) instead of retrying
            c.start(timeout=15)
        except AuthFailedError:
            pass
        deadline = time.monotonic() + 15  # Kazoo reports CONNECTED before its SASL exchange
        while c.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not c.connected
        c.stop()
        c.close()
    log = srv.log_text()
    assert "bad password for user 'alice'" in log and "unknown user 'mallory'" in log


def test_session_require_client_sasl_auth_process(servers: Any, tmp_path: Path) -> None:
    srv = servers({"sessionRequireClientSASLAuth": "true"},
                  system_properties={"java.security.auth.login.config": jaas_file(tmp_path)})
    good = sasl_kazoo(srv, "bob", "bob-secret")
    try:
        good.create("/ok", b"1")
        assert good.get("/ok")[0] == b"1"
    finally:
        good.stop()
        good.close()
    err, closed = raw_request_without_auth(srv.port)
    assert err == Err.SESSIONCLOSEDREQUIRESASLAUTH and closed
    assert "does not match with any of the expected authentication scheme ['sasl']" \
        in srv.log_text()


def raw_request_without_auth(port: int) -> tuple[int, bool]:
    """Connect, send getData('/') unauthenticated: (reply err, closed afterwards)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(frame(S.ConnectRequest(0, 0, 10000, 0, bytes(16), False)))
        read_frame(s)
        s.sendall(frame(S.RequestHeader(1, Op.getData), S.GetDataRequest("/", False)))
        hdr, _ = decode(S.ReplyHeader, read_frame(s))
        try:
            closed = s.recv(1) == b""
        except ConnectionResetError:
            closed = True
        return hdr.err, closed


def read_frame(s: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    (n,) = struct.unpack(">i", exactly(4))
    return exactly(n)


def test_super_digest_and_skip_acl_process(servers: Any) -> None:
    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_digest_acl

    srv = servers(system_properties={
        "zookeeper.DigestAuthenticationProvider.superDigest": digest("super:letmein")})
    owner = kazoo(srv.connect_string, auth_data=[("digest", "u1:p1")])
    root = kazoo(srv.connect_string, auth_data=[("digest", "super:letmein")])
    other = kazoo(srv.connect_string)
    try:
        owner.create("/private", b"x", acl=[make_digest_acl("u1", "p1", all=True)])
        owner.create("/private/ro", b"y", acl=[make_digest_acl("u1", "p1", read=True)])
        with pytest.raises(NoAuthError):
            other.get("/private")
        assert root.get("/private")[0] == b"x"
        root.set("/private/ro", b"z")
        root.delete("/private", recursive=True)
    finally:
        for c in (owner, root, other):
            c.stop()
            c.close()
    skip = servers({"skipACL": "yes"})
    a = kazoo(skip.connect_string, auth_data=[("digest", "u1:p1")])
    b = kazoo(skip.connect_string)
    try:
        a.create("/private", b"x", acl=[make_digest_acl("u1", "p1", all=True)])
        assert b.get("/private")[0] == b"x"
        b.delete("/private")
    finally:
        for c in (a, b):
            c.stop()
            c.close()


def connection_refused(address: tuple[str, int]) -> bool:
    """True when the server closes a new connection without a ConnectResponse."""
    try:
        with socket.create_connection(address, timeout=10) as s:
            s.sendall(frame(S.ConnectRequest(0, 0, 10000, 0, bytes(16), False)))
            return s.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_max_client_cnxns(servers: Any) -> None:
    srv = servers({"maxClientCnxns": 3})
    clients = [kazoo(srv.connect_string) for _ in range(3)]
    try:
        assert connection_refused(srv.address)
        assert "Too many connections from 127.0.0.1 - max is 3" in srv.log_text()
        for i, c in enumerate(clients):
            c.create(f"/still-{i}", b"ok")
            assert c.get(f"/still-{i}")[0] == b"ok"
    finally:
        for c in clients:
            c.stop()
            c.close()


def test_flooding_client_is_paused_and_others_keep_working(servers: Any) -> None:
    import psutil

    srv = servers()
    proc = psutil.Process(srv.pid)
    setup = kazoo(srv.connect_string)
    setup.create("/big", b"x" * 64 * 1024)
    setup.stop()
    setup.close()
    baseline = proc.memory_info().rss
    flood = socket.create_connection(srv.address, timeout=10)
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flood.sendall(frame(S.ConnectRequest(0, 0, 30000, 0, bytes(16), False)))
    read_frame(flood)
    flood.setblocking(False)
    request = frame(S.RequestHeader(7, Op.getData), S.GetDataRequest("/big", False))
    burst = request * 256
    sent = 0
    stalled_since: float | None = None
    other = kazoo(srv.connect_string)
    completed = 0
    peak = baseline
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                sent += flood.send(burst)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
            other.set("/big", b"y" * 16) if completed == 0 else other.exists("/big")
            completed += 1
            peak = max(peak, proc.memory_info().rss)
            # The server stopped reading the flooder: nothing it sent was taken for a while
            # although the other client is being served all along.
            if stalled_since is not None and time.monotonic() - stalled_since > 3 \
                    and completed > 50:
                break
            time.sleep(0.005)
        else:
            pytest.fail(f"the flooding connection was never paused ({sent} bytes taken)")
        assert peak - baseline < 400 * 1024 * 1024, (baseline, peak)
        assert other.get("/")[1] is not None
    finally:
        flood.close()
        other.stop()
        other.close()
    assert srv.running


def test_jaas_and_super_digest_arrive_through_java_tool_options(tmp_path: Path) -> None:
    """Operators pass these as JVM properties (Kazoo's harness, zkServer.sh's
    SERVER_JVMFLAGS, JAVA_TOOL_OPTIONS): zkpy reads them from there too."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_acl

    from zkpy.testing.launchers import ZkpyServer

    jaas = tmp_path / "jaas.conf"
    jaas.write_text('Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n'
                    '  user_alice="wonderland";\n};\n')
    flags = (f"-Xmx64m -Djava.security.auth.login.config={jaas} "
             f"-Dzookeeper.DigestAuthenticationProvider.superDigest={digest('super:letmein')}")
    with ZkpyServer(env={"JAVA_TOOL_OPTIONS": flags}) as srv:
        alice = KazooClient(srv.connect_string, sasl_options={
            "mechanism": "DIGEST-MD5", "username": "alice", "password": "wonderland"})
        alice.start()
        alice.create("/private", b"s", acl=[make_acl("sasl", "alice", all=True)])
        other = KazooClient(srv.connect_string)
        other.start()
        with pytest.raises(NoAuthError):
            other.get("/private")
        root = KazooClient(srv.connect_string, auth_data=[("digest", "super:letmein")])
        root.start()
        assert root.get("/private")[0] == b"s"
        for client in (alice, other, root):
            client.stop()
            client.close()
