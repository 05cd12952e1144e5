"""SASL on the client protocol: DIGEST-MD5 against a JAAS ``Server`` section.

ZooKeeper authenticates SASL clients with request type 102 (GetSASLRequest
token in, SetSASLResponse token out) and, on success, gives the connection
the id ``sasl:<user>``. Users and passwords come from the JAAS file named by
``java.security.auth.login.config``: the ``Server`` section's
``DigestLoginModule`` with ``user_<name>="<password>"`` options. The digest
exchange is RFC 2831 with ZooKeeper's fixed server name ``zk-sasl-md5``.
Pure: a ``DigestMD5Server`` per connection, bytes in, bytes out.

Quorum SASL (``zkpy.auth.quorum_sasl``) runs the same mechanism between
ensemble members, under the names ``zookeeper-quorum`` / ``zk-quorum-sasl-md5``,
with ``DigestMD5Client`` on the connecting side.
"""

from __future__ import annotations

import hashlib
import re

REALM = "zk-sasl-md5"
SERVICE = "zookeeper"


class SaslError(Exception):
    """The client failed to authenticate; the connection is to be closed."""


def parse_jaas_users(text: str, section: str = "Server") -> dict[str, str]:
    """user -> password from the ``user_<name>="<pw>"`` options of one JAAS section."""
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    m = re.search(r"(?:^|[\s;}])" + re.escape(section) + r"\s*\{(.*?)\}\s*;", text, re.S)
    if m is None:
        return {}
    body = m.group(1)
    return {name: pw for name, pw in re.findall(r'user_([^\s=]+)\s*=\s*"([^"]*)"', body)}


def _h(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def _hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _parse_directives(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, quoted, bare in re.findall(r'\s*([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,]*))\s*,?', text):
        out[key.lower()] = quoted.replace('\\"', '"') if quoted or not bare else bare.strip()
    return out


class DigestMD5Server:
    """One DIGEST-MD5 exchange: challenge, then verify the response and send rspauth."""

    def __init__(self, users: dict[str, str], nonce: str, *, realm: str = REALM,
                 service: str = SERVICE) -> None:
        self.users = users
        self.realm = realm
        self.service = service
        self.nonce = nonce  # fresh for each exchange: the caller's randomness
        self.stage = 0
        self.user: str | None = None

    @property
    def complete(self) -> bool:
        return self.user is not None and self.stage >= 2

    def step(self, token: bytes | None) -> bytes:
        if self.stage == 0:
            self.stage = 1
            return (f'realm="{self.realm}",nonce="{self.nonce}",qop="auth",charset=utf-8,'
                    f'algorithm=md5-sess').encode()
        if self.stage == 1:
            return self._verify(token or b"")
        if self.stage == 2 and not token:
            return b""
        raise SaslError("unexpected SASL message after authentication completed")

    def _verify(self, token: bytes) -> bytes:
        try:
            d = _parse_directives(token.decode("utf-8"))
        except UnicodeDecodeError:
            raise SaslError("response is not UTF-8") from None
        user = d.get("username", "")
        password = self.users.get(user)
        if password is None:
            raise SaslError(f"unknown user {user!r}")
        if d.get("nonce") != self.nonce:
            raise SaslError("nonce mismatch")
        realm = d.get("realm", self.realm)
        cnonce = d.get("cnonce", "")
        nc = d.get("nc", "00000001")
        qop = d.get("qop", "auth")
        uri = d.get("digest-uri", f"{self.service}/{self.realm}")
        authzid = d.get("authzid")
        a1 = _h(f"{user}:{realm}:{password}".encode()) + f":{self.nonce}:{cnonce}".encode()
        if authzid:
            a1 += f":{authzid}".encode()
        ha1 = _hex(a1)

        def response(a2: str) -> str:
            return _hex(f"{ha1}:{self.nonce}:{nc}:{cnonce}:{qop}:{_hex(a2.encode())}".encode())

        if response(f"AUTHENTICATE:{uri}") != d.get("response"):
            raise SaslError(f"bad password for user {user!r}")
        if authzid and authzid != user:
            raise SaslError(f"user {user!r} may not act as {authzid!r}")
        self.user = user
        self.stage = 2
        return f"rspauth={response(':' + uri)}".encode()


def parse_jaas_login(text: str, section: str) -> tuple[str, str] | None:
    """(username, password) of a JAAS section's DigestLoginModule options, as a
    ZooKeeper learner's ``QuorumLearner`` section gives them; None if absent."""
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    m = re.search(r"(?:^|[\s;}])" + re.escape(section) + r"\s*\{(.*?)\}\s*;", text, re.S)
    if m is None:
        return None
    opts = dict(re.findall(r'(?<![\w_])(username|password)\s*=\s*"([^"]*)"', m.group(1)))
    if "username" not in opts or "password" not in opts:
        return None
    return opts["username"], opts["password"]


def _response(user: str, realm: str, password: str, nonce: str, cnonce: str, nc: str,
              qop: str, a2: str) -> str:
    ha1 = _hex(_h(f"{user}:{realm}:{password}".encode()) + f":{nonce}:{cnonce}".encode())
    return _hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{_hex(a2.encode())}".encode())


class DigestMD5Client:
    """The connecting side of one DIGEST-MD5 exchange (what Java's SaslClient
    does): the server's challenge in, the response out; then the server's
    rspauth in, checked (a server that does not know our password cannot
    make it)."""

    def __init__(self, user: str, password: str, service: str, server_name: str,
                 cnonce: str) -> None:
        self.user, self.password = user, password
        self.uri = f"{service}/{server_name}"
        self.cnonce = cnonce  # fresh for each exchange: the caller's randomness
        self.expected: str | None = None
        self.complete = False

    def step(self, challenge: bytes) -> bytes | None:
        """The answer to a server token: the response to its challenge, then
        None once its rspauth checked out (SaslError otherwise)."""
        try:
            d = _parse_directives(challenge.decode("utf-8"))
        except UnicodeDecodeError:
            raise SaslError("challenge is not UTF-8") from None
        if self.expected is not None:
            if d.get("rspauth") != self.expected:
                raise SaslError("the server's rspauth does not match: it does not know us")
            self.complete = True
            return None
        nonce = d.get("nonce")
        if not nonce or "auth" not in d.get("qop", "auth").split(","):
            raise SaslError("challenge without a nonce or qop=auth")
        realm = d.get("realm", "")
        nc, qop = "00000001", "auth"
        response = _response(self.user, realm, self.password, nonce, self.cnonce, nc, qop,
                             f"AUTHENTICATE:{self.uri}")
        self.expected = _response(self.user, realm, self.password, nonce, self.cnonce, nc,
                                  qop, f":{self.uri}")
        return (f'charset=utf-8,username="{self.user}",realm="{realm}",nonce="{nonce}",'
                f'nc={nc},cnonce="{self.cnonce}",digest-uri="{self.uri}",maxbuf=65536,'
                f'response={response},qop={qop}').encode()
