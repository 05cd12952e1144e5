"""ZooKeeper's election-port encodings (QuorumCnxManager and FastLeaderElection, 3.8).

Pure byte functions, no sockets. All integers are big-endian, as Java's
``DataOutputStream`` / ``ByteBuffer`` write them.

The connection's initial message (``QuorumCnxManager.startConnection``), sent
once by the side that connects::

    long  protocol version   -65536 (V1: one address) or -65535 (V2: several)
    long  sid                the sender's server id
    int   n                  length of the address string, 1..2048 (maxBuffer)
    n     address bytes      "host:port" (V2: "host1:port1|host2:port2"; IPv6
                             hosts in brackets, "[::1]:3888")

A receiver also accepts the pre-3.5 form: a first long >= 0 is the sid itself
and nothing follows (``handleConnection``).

After it, each message either way is framed (``SendWorker`` /
``RecvWorker``): an int length, 1..524288 (PACKETMAXSIZE), then that many
bytes. An election notification is such a payload
(``FastLeaderElection.buildMsg``)::

    int   state              0 LOOKING, 1 FOLLOWING, 2 LEADING, 3 OBSERVING
    long  leader             the proposed leader's sid
    long  zxid               its last zxid
    long  electionEpoch      the logical clock (our ``Notification.round``)
    long  peerEpoch          its currentEpoch
    int   version            0x2
    int   n                  config length
    n     config bytes       the sender's QuorumVerifier as text (44 + n bytes in all)

The sender's sid is not in the notification: it is the sid of the connection.
As ``WorkerReceiver`` does, decoding accepts the older layouts too: 28 bytes
(no peerEpoch: it is the zxid's epoch) and exactly 40 bytes (peerEpoch; the
last int, version 0x1 from a 3.4.6+ sender, is not read); longer ones with a
version up to 0x1 carry no config. Bytes after the known fields are ignored.
Anything else (short, an unknown state, a config length that is negative or
overruns the payload) raises ``WireError``, the only exception decoding
raises. ZooKeeper skips such a notification (or, for a bad config length,
throws in its receiver thread); an adapter should drop it and go on.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from zkpy.zab.election import FOLLOWING, LEADING, LOOKING, OBSERVING, Notification

__all__ = [
    "WireError", "InitialMessage", "PROTOCOL_VERSION_V1", "PROTOCOL_VERSION_V2",
    "MAX_ADDRESS_BYTES", "PACKET_MAX_SIZE", "NOTIFICATION_VERSION",
    "encode_initial_message", "decode_initial_message", "split_initial_message",
    "frame", "split_frame", "encode_notification", "decode_notification",
]

PROTOCOL_VERSION_V1 = -65536  # QuorumCnxManager.PROTOCOL_VERSION_V1 (ZOOKEEPER-107, 3.5.0)
PROTOCOL_VERSION_V2 = -65535  # ... V2, several addresses (ZOOKEEPER-3188, 3.6.0)
MAX_ADDRESS_BYTES = 2048  # QuorumCnxManager.maxBuffer
PACKET_MAX_SIZE = 512 * 1024  # QuorumCnxManager.PACKETMAXSIZE
NOTIFICATION_VERSION = 0x2  # FastLeaderElection.Notification.CURRENTVERSION

_STATES = (LOOKING, FOLLOWING, LEADING, OBSERVING)
_LONG = struct.Struct(">q")
_INT = struct.Struct(">i")
_HEAD = struct.Struct(">qqi")  # version, sid, address length
_V28 = struct.Struct(">iqqq")  # state, leader, zxid, electionEpoch: 28 bytes
_V36 = struct.Struct(">iqqqq")  # ... peerEpoch: 36 bytes, sent in a 40-byte buffer
_OLD_SIZE = 40  # WorkerReceiver: exactly 40 bytes is read without a version
_HEAD40 = struct.Struct(">iqqqqi")  # ... version: 40 bytes; then int config length, config
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_PORT = re.compile(r"[+-]?[0-9]+")
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


class WireError(ValueError):
    """Bytes that are not a well-formed election-port message."""


@dataclass(frozen=True, slots=True)
class InitialMessage:
    """Who connected: its sid and election addresses ((host, port) pairs);
    ``protocol_version`` is None for the pre-3.5 form (sid only)."""

    sid: int
    addresses: tuple[tuple[str, int], ...]
    protocol_version: int | None = PROTOCOL_VERSION_V1


# -- the initial message -----------------------------------------------------------------


def _format_address(host: str, port: int) -> str:
    if not host or "|" in host or not 0 <= port <= 0xFFFF:
        raise ValueError(f"not an election address: {host!r} port {port}")
    # NetUtils.formatInetAddr: an IPv6 literal goes in brackets.
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _parse_address(text: str) -> tuple[str, int]:
    """ConfigUtils.getHostAndPort, then Integer.parseInt of the port."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1:close + 2] != ":":
            raise WireError(f"badly formed address: {text!r}")
        host, port_text = text[1:close], text[close + 2:]
        if ":" in port_text:
            raise WireError(f"badly formed address: {text!r}")
    else:
        parts = text.split(":")
        if len(parts) != 2:
            raise WireError(f"badly formed address: {text!r}")
        host, port_text = parts
    if not host:
        raise WireError(f"badly formed address: {text!r}")
    if not _PORT.fullmatch(port_text):  # Integer.parseInt: one sign at most, ASCII digits
        raise WireError(f"bad port number: {port_text!r}")
    port = int(port_text)
    if not 0 <= port <= 0xFFFF:
        raise WireError(f"bad port number: {port_text!r}")
    return host, port


def encode_initial_message(sid: int, addresses: Sequence[tuple[str, int]],
                           protocol_version: int = PROTOCOL_VERSION_V1) -> bytes:
    """What a connecting server sends first; V1 carries exactly one address."""
    if protocol_version not in (PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2):
        raise ValueError(f"unknown protocol version {protocol_version}")
    if not addresses or (protocol_version == PROTOCOL_VERSION_V1 and len(addresses) != 1):
        raise ValueError(f"protocol version {protocol_version} cannot carry {len(addresses)} "
                         "addresses")
    if not _LONG_MIN <= sid <= _LONG_MAX:
        raise ValueError(f"sid {sid} is not a long")
    text = "|".join(_format_address(h, p) for h, p in addresses).encode()
    if len(text) > MAX_ADDRESS_BYTES:
        raise ValueError(f"address string of {len(text)} bytes exceeds {MAX_ADDRESS_BYTES}")
    return _HEAD.pack(protocol_version, sid, len(text)) + text


def split_initial_message(buf: bytes) -> tuple[InitialMessage, bytes] | None:
    """The initial message at the start of ``buf`` and the bytes after it, or
    None if ``buf`` does not hold all of it yet (for a stream reader)."""
    if len(buf) < _LONG.size:
        return None
    (version,) = _LONG.unpack_from(buf, 0)
    if version >= 0:  # before ZOOKEEPER-107 the first long was the sid
        return InitialMessage(version, (), None), bytes(buf[_LONG.size:])
    if version not in (PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2):
        raise WireError(f"unrecognized protocol version {version}")
    if len(buf) < _HEAD.size:
        return None
    _, sid, n = _HEAD.unpack_from(buf, 0)
    if not 0 < n <= MAX_ADDRESS_BYTES:
        raise WireError(f"unreasonable address length {n}")
    end = _HEAD.size + n
    if len(buf) < end:
        return None
    try:
        text = bytes(buf[_HEAD.size:end]).decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"address string is not UTF-8: {exc}") from None
    addresses = tuple(_parse_address(a) for a in text.split("|"))
    if version == PROTOCOL_VERSION_V1 and len(addresses) != 1:
        raise WireError(f"protocol version {version} with {len(addresses)} addresses")
    return InitialMessage(sid, addresses, version), bytes(buf[end:])


def decode_initial_message(data: bytes) -> InitialMessage:
    """Exactly one initial message, nothing before or after it."""
    found = split_initial_message(data)
    if found is None:
        raise WireError(f"initial message cut short at {len(data)} bytes")
    msg, rest = found
    if rest:
        raise WireError(f"{len(rest)} bytes after the initial message")
    return msg


# -- framing ----------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """An int length, then the payload (SendWorker.send)."""
    if not 0 < len(payload) <= PACKET_MAX_SIZE:
        raise ValueError(f"payload of {len(payload)} bytes cannot be framed")
    return _INT.pack(len(payload)) + payload


def split_frame(buf: bytes) -> tuple[bytes, bytes] | None:
    """The first frame's payload and the bytes after it, or None if ``buf``
    does not hold a whole frame yet. A bad length raises (RecvWorker closes
    the connection on it)."""
    if len(buf) < _INT.size:
        return None
    (n,) = _INT.unpack_from(buf, 0)
    if not 0 < n <= PACKET_MAX_SIZE:
        raise WireError(f"invalid packet length {n}")
    end = _INT.size + n
    if len(buf) < end:
        return None
    return bytes(buf[_INT.size:end]), bytes(buf[end:])


# -- notifications ---------------------------------------------------------------------------


def encode_notification(n: Notification, config: bytes = b"") -> bytes:
    """The notification payload (unframed) as a 3.8 server sends it; the
    sender is not part of it. ``config`` is the QuorumVerifier's text
    (``QuorumVerifier.toString()``), which a ZooKeeper peer parses."""
    if n.state not in _STATES:
        raise ValueError(f"unknown state {n.state}")
    for name in ("leader", "zxid", "round", "peer_epoch"):
        if not _LONG_MIN <= getattr(n, name) <= _LONG_MAX:
            raise ValueError(f"{name} {getattr(n, name)} is not a long")
    return (_HEAD40.pack(n.state, n.leader, n.zxid, n.round, n.peer_epoch, NOTIFICATION_VERSION)
            + _INT.pack(len(config)) + config)


def decode_notification(payload: bytes, sender: int) -> tuple[Notification, bytes]:
    """A notification payload from the connection of server ``sender``: the
    Notification and the config bytes it carried (b"" before version 0x2)."""
    size = len(payload)
    if size < _V28.size:
        raise WireError(f"notification of {size} bytes is too short")
    if size == _V28.size:
        state, leader, zxid, round_ = _V28.unpack_from(payload, 0)
        peer_epoch, version = zxid >> 32, 0
    elif size < _OLD_SIZE:
        raise WireError(f"notification of {size} bytes has no known layout")
    elif size == _OLD_SIZE:  # the last 4 bytes (a version 0x1, if any) are not read
        state, leader, zxid, round_, peer_epoch = _V36.unpack_from(payload, 0)
        version = 0
    else:
        state, leader, zxid, round_, peer_epoch, version = _HEAD40.unpack_from(payload, 0)
    if state not in _STATES:
        raise WireError(f"unknown state {state}")
    config = b""
    if version > 0x1:
        start = _HEAD40.size + _INT.size
        if size < start:
            raise WireError(f"notification version 0x{version:x} without a config length")
        (n,) = _INT.unpack_from(payload, _HEAD40.size)
        if n < 0 or start + n > size:
            raise WireError(f"config length {n} does not fit a {size}-byte notification")
        config = bytes(payload[start:start + n])
    return Notification(sender, state, leader, zxid, round_, peer_epoch), config
