"""Quorum SASL: ensemble members authenticate each other, as ZooKeeper 3.8 does.

Settings (zoo.cfg, QuorumAuth): ``quorum.auth.enableSasl`` turns it on;
``quorum.auth.learnerRequireSasl`` makes a server authenticate itself
whenever it connects to another (to a voter's election port, to the
leader's quorum port); ``quorum.auth.serverRequireSasl`` makes it refuse a
connection that does not authenticate. Credentials come from the JAAS file
(``-Djava.security.auth.login.config``): the ``QuorumServer`` section's
``user_<name>="<password>"`` entries are who may connect, the
``QuorumLearner`` section's ``username``/``password`` who we are (section
names per ``quorum.auth.server.saslLoginContext`` /
``quorum.auth.learner.saslLoginContext``). Only DIGEST-MD5 is supported
(no Kerberos).

On the wire (SaslQuorumAuthLearner / SaslQuorumAuthServer): right after the
connection opens (on the election port: after the initial message), the
connecting side sends ``QuorumAuthPacket{long magic; int status; buffer
token}`` with the magic (Java's -0xa0dbcafecafe1234L) and status IN_PROGRESS (0) and
an empty token; the other side answers IN_PROGRESS with the DIGEST-MD5
challenge; the connecting side IN_PROGRESS with its response; the other side
SUCCESS (1) with rspauth, or ERROR (-1) and closes. A server that does not
require SASL takes a connection whose first 8 bytes are not the magic as it
is, and one whose authentication failed too.

Pure: the two handshakes are bytes in, bytes out; ``zkpy.net.peerlinks``
runs them before a connection carries anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from zkpy.auth.sasl import (
    DigestMD5Client,
    DigestMD5Server,
    SaslError,
    parse_jaas_login,
    parse_jaas_users,
)

__all__ = ["MAGIC", "IN_PROGRESS", "SUCCESS", "ERROR", "QuorumAuthError", "QuorumSasl",
           "auth_packet", "split_auth_packet", "starts_with_auth", "LearnerHandshake",
           "ServerHandshake"]

# QuorumAuth.QUORUM_AUTH_MAGIC_NUMBER, Java's -0xa0dbcafecafe1234L: the literal is a negative
# long, so the constant is positive.
MAGIC = 0x5F2435013501EDCC
IN_PROGRESS, SUCCESS, ERROR = 0, 1, -1
PROTOCOL = "zookeeper-quorum"  # QuorumAuth.QUORUM_SERVER_PROTOCOL_NAME
SERVER_NAME = "zk-quorum-sasl-md5"  # QuorumAuth.QUORUM_SERVER_SASL_DIGEST
MAX_ROUNDS = 5  # SaslQuorumAuthServer.MAX_RETRIES
_HEAD = struct.Struct(">qii")  # magic, status, token length
_MAX_TOKEN = 1 << 16


class QuorumAuthError(Exception):
    """The peer did not authenticate (or we could not); ``reply`` is what to
    send it before closing (an ERROR packet, from the server side)."""

    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


@dataclass(frozen=True)
class QuorumSasl:
    """What a member does about quorum SASL (None of it when not ``enabled``)."""

    enabled: bool = False
    learner_required: bool = False
    server_required: bool = False
    users: dict[str, str] = field(default_factory=dict)
    login: tuple[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], jaas_text: str | None) -> QuorumSasl:
        """From zoo.cfg's quorum.auth.* keys and the JAAS file's text (ValueError
        when SASL is required of us and the JAAS file does not say who we are)."""
        if not _truthy(settings.get("quorum.auth.enableSasl")):
            return cls()
        learner = _truthy(settings.get("quorum.auth.learnerRequireSasl"))
        server = _truthy(settings.get("quorum.auth.serverRequireSasl"))
        server_section = settings.get("quorum.auth.server.saslLoginContext", "QuorumServer")
        learner_section = settings.get("quorum.auth.learner.saslLoginContext", "QuorumLearner")
        users = parse_jaas_users(jaas_text or "", server_section)
        login = parse_jaas_login(jaas_text or "", learner_section)
        if learner and login is None:
            raise ValueError(f"quorum.auth.learnerRequireSasl=true needs a {learner_section} "
                             "section with username and password in the JAAS file "
                             "(-Djava.security.auth.login.config)")
        if server and not users:
            raise ValueError(f"quorum.auth.serverRequireSasl=true needs a {server_section} "
                             "section with user_<name>=\"<password>\" in the JAAS file "
                             "(-Djava.security.auth.login.config)")
        return cls(True, learner, server, users, login)


def auth_packet(status: int, token: bytes) -> bytes:
    return _HEAD.pack(MAGIC, status, len(token)) + token


def starts_with_auth(buf: bytes | bytearray, off: int = 0) -> bool | None:
    """QuorumAuth.nextPacketIsAuth: do the next 8 bytes hold the magic? (None:
    fewer than 8 bytes are here yet)."""
    if len(buf) < off + 8:
        return None
    magic: int = struct.unpack_from(">q", buf, off)[0]
    return magic == MAGIC


def split_auth_packet(buf: bytes | bytearray, off: int = 0) -> tuple[int, bytes, int] | None:
    """(status, token, offset after it) of the QuorumAuthPacket at ``off``, None
    while incomplete; QuorumAuthError if it is not one."""
    if len(buf) < off + _HEAD.size:
        return None
    magic, status, n = _HEAD.unpack_from(buf, off)
    if magic != MAGIC:
        raise QuorumAuthError(f"not a quorum auth packet (magic 0x{magic & (2**64 - 1):x})")
    if not -1 <= n <= _MAX_TOKEN or status not in (IN_PROGRESS, SUCCESS, ERROR):
        raise QuorumAuthError(f"quorum auth packet with status {status}, token length {n}")
    end = off + _HEAD.size + max(n, 0)
    if len(buf) < end:
        return None
    return status, bytes(buf[off + _HEAD.size:end]), end


class LearnerHandshake:
    """The connecting side (SaslQuorumAuthLearner.authenticate)."""

    def __init__(self, user: str, password: str, cnonce: str) -> None:
        self.client = DigestMD5Client(user, password, PROTOCOL, SERVER_NAME, cnonce)
        self.done = False

    def first(self) -> bytes:
        return auth_packet(IN_PROGRESS, b"")  # DIGEST-MD5 has no initial response

    def feed(self, buf: bytes | bytearray, off: int) -> tuple[bytes, int] | None:
        """Take the server's next packet: (bytes to send, offset after it), or
        None while it is incomplete. ``done`` once authenticated."""
        found = split_auth_packet(buf, off)
        if found is None:
            return None
        status, token, end = found
        if status == ERROR:
            raise QuorumAuthError("the server refused our credentials")
        try:
            answer = self.client.step(token)
        except SaslError as e:
            raise QuorumAuthError(str(e)) from None
        if status == SUCCESS:
            if answer is not None or not self.client.complete:
                raise QuorumAuthError("the server ended the exchange before it was complete")
            self.done = True
            return b"", end
        if answer is None:
            raise QuorumAuthError("Protocol error: attempting to send response after completion")
        return auth_packet(IN_PROGRESS, answer), end


class ServerHandshake:
    """The accepting side (SaslQuorumAuthServer.authenticate)."""

    def __init__(self, users: dict[str, str], nonce: str) -> None:
        self.server = DigestMD5Server(users, nonce, realm=SERVER_NAME, service=PROTOCOL)
        self.rounds = 0
        self.done = False

    @property
    def user(self) -> str | None:
        return self.server.user

    def feed(self, buf: bytes | bytearray, off: int) -> tuple[bytes, int] | None:
        found = split_auth_packet(buf, off)
        if found is None:
            return None
        _, token, end = found
        fail = auth_packet(ERROR, b"")
        try:
            answer = self.server.step(token)
        except SaslError as e:
            raise QuorumAuthError(str(e), fail) from None
        if self.server.complete:
            self.done = True
            return auth_packet(SUCCESS, answer), end
        self.rounds += 1
        if self.rounds > MAX_ROUNDS:
            raise QuorumAuthError(f"no authentication after {MAX_ROUNDS} rounds", fail)
        return auth_packet(IN_PROGRESS, answer), end
