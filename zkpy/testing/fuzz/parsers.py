"""Fuzz targets for the pure decoders of the three ports.

Each raises only its format's error on bytes it cannot take, and never
anything else (``ContractViolation`` otherwise): client request bodies
``JuteError`` (``KeyError`` for an unknown opcode, as documented in
``zkpy.jute.requests``); the election port's initial message, frames and
notifications ``WireError``; quorum packets ``PacketError``; quorum SASL
packets and handshakes ``QuorumAuthError``. Byte 0 of an input picks the
decoder, the rest is its input.
"""

from __future__ import annotations

import struct

from zkpy.auth import quorum_sasl as qsasl
from zkpy.auth.sasl import DigestMD5Client
from zkpy.jute.codec import JuteError
from zkpy.jute.requests import decode_body, decode_connect
from zkpy.testing.fuzz.client import ContractViolation
from zkpy.testing.fuzz.mutate import Mutator
from zkpy.zab import messages as m
from zkpy.zab import wire
from zkpy.zab.election import Notification

_USERS = {"learner": "secret"}


def _request(data: bytes) -> None:
    if len(data) < 8:
        return
    (op,) = struct.unpack_from(">i", data, 4)
    try:
        decode_body(op, data)
    except (JuteError, KeyError):
        pass
    try:
        decode_connect(data)
    except JuteError:
        pass


def _initial(data: bytes) -> None:
    try:
        found = wire.split_initial_message(data)
    except wire.WireError:
        return
    if found is not None:
        msg, rest = found
        if msg.protocol_version is not None and not msg.addresses:
            raise ContractViolation(f"a V1/V2 initial message without an address: {msg}")
        if bytes(data).endswith(rest) is False:
            raise ContractViolation("the bytes after the initial message are not the input's")


def _frames(data: bytes) -> None:
    buf = data
    while True:
        try:
            framed = wire.split_frame(buf)
        except wire.WireError:
            return
        if framed is None:
            return
        payload, buf = framed
        try:
            n, config = wire.decode_notification(payload, 7)
        except wire.WireError:
            continue
        if not isinstance(n, Notification) or n.sender != 7:
            raise ContractViolation(f"a notification from nowhere: {n}")
        wire.encode_notification(n, config)  # what we decoded, we can send


def _packets(data: bytes) -> None:
    off = 0
    while True:
        try:
            found = m.split_packet(data, off)
        except m.PacketError:
            return
        if found is None:
            return
        pkt, end = found
        if end <= off or end > len(data):
            raise ContractViolation(f"split_packet moved from {off} to {end} of {len(data)}")
        off = end
        m.encode_packet(pkt)
        for reader in (m.read_revalidate_answer, m.read_revalidate_request, m.request_head):
            try:
                reader(pkt.data)
            except m.PacketError:
                pass
        try:
            m.learner_info(pkt)
        except JuteError:
            pass
        try:
            m.designated_leader(pkt)
        except m.PacketError:
            pass


def _sasl_server(data: bytes) -> None:
    shake = qsasl.ServerHandshake(_USERS, "fuzznonce")
    off = 0
    try:
        while not shake.done:
            step = shake.feed(data, off)
            if step is None:
                return
            _, off = step
    except qsasl.QuorumAuthError:
        return


def _sasl_learner(data: bytes) -> None:
    shake = qsasl.LearnerHandshake("learner", "secret", "fuzzcnonce")
    off = 0
    try:
        while not shake.done:
            step = shake.feed(data, off)
            if step is None:
                return
            _, off = step
    except qsasl.QuorumAuthError:
        return


_DECODERS = (_request, _initial, _frames, _packets, _sasl_server, _sasl_learner)


class WireTarget:
    def run(self, data: bytes) -> None:
        if data:
            _DECODERS[data[0] % len(_DECODERS)](data[1:])


_HOSTS = ("127.0.0.1", "[::1]", "[::1", "::1", "h", "", "[]", "a|b", "h\u00e9", "[fe80::1%eth0]")
_PORTS = ("3888", "+3888", "-1", "+-5", "-+5", "65536", "", "0x10", "1e3", "\u0663", " 1", "+")


def generate(mut: Mutator) -> bytes:
    """Decoder 1 (the initial message) with address strings built from pieces, or a
    seed mutated."""
    rng = mut.rng
    if rng.random() < 0.5:
        return mut.mutate(rng.choice(seeds()))
    parts = [rng.choice(_HOSTS) + ":" + rng.choice(_PORTS) for _ in range(rng.randint(1, 3))]
    text = "|".join(parts).encode("utf-8", "surrogatepass")
    version = rng.choice((wire.PROTOCOL_VERSION_V1, wire.PROTOCOL_VERSION_V2))
    return b"\x01" + struct.pack(">qqi", version, rng.randint(0, 9), len(text)) + text


def seeds() -> list[bytes]:
    """A valid input of each decoder."""
    from zkpy.jute import schema as S
    from zkpy.jute.protocol import Op

    client = DigestMD5Client("learner", "secret", qsasl.PROTOCOL, qsasl.SERVER_NAME, "c")
    server = qsasl.ServerHandshake(_USERS, "n")
    challenge, _ = server.feed(qsasl.auth_packet(qsasl.IN_PROGRESS, b""), 0) or (b"", 0)
    answer = client.step(challenge[16:]) or b""
    return [
        b"\x00" + S.RequestHeader(1, Op.create).encode()
        + S.CreateRequest("/a", b"x", [S.ACL(31, S.Id("world", "anyone"))], 0).encode(),
        b"\x00" + S.ConnectRequest(0, 0, 30000, 0, bytes(16), False).encode(),
        b"\x01" + wire.encode_initial_message(3, [("127.0.0.1", 3888)])
        + wire.frame(wire.encode_notification(Notification(3, 0, 3, 5, 1, 0), b"v")),
        b"\x01" + wire.encode_initial_message(3, [("::1", 1), ("h", 2)], wire.PROTOCOL_VERSION_V2),
        b"\x02" + wire.frame(wire.encode_notification(Notification(3, 2, 3, 1 << 32, 4, 1),
                                                      b"server.1=h:1:2\nversion=1")),
        b"\x03" + m.follower_info(9, 1).encode() + m.packet(m.ACKEPOCH, 5, m.int_data(-1)).encode()
        + m.QuorumPacket(m.REQUEST, -1, m.request_data(1, 2, 9, b"\0\0\0\1/"),
                         [S.Id("digest", "u:p")]).encode(),
        b"\x04" + qsasl.auth_packet(qsasl.IN_PROGRESS, b"")
        + qsasl.auth_packet(qsasl.IN_PROGRESS, answer),
        b"\x05" + challenge,
    ]
