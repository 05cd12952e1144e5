"""The client port's fuzz target: hostile bytes into a standalone server in memory.

``ClientTarget`` runs the production request pipeline
(``zkpy.testing.standalone``: ServerCore, Replica, Peer(standalone=True), a
disk that syncs at once) and feeds one input per call to ``run``:

    byte 0   bit 0: 0 = after a real handshake, 1 = raw (the input is the
             handshake: mutated ConnectRequests, four-letter words, framing);
             bit 1: the second server, which requires SASL of every session
             (``zookeeper.enforce.auth``) instead of taking anyone
    byte 1   how the rest is cut into TCP reads (0: all at once)
    rest     the bytes the client sends

The contract it checks, after every input: nothing raised out of the core;
every byte the server wrote to a client that shook hands is whole frames;
the connection is gone from the core once closed (by either side); no write
is left in flight; and a healthy client on another connection still
creates, reads and deletes a znode. Each server is rebuilt every
``RESET_EVERY`` inputs, so a run's memory stays flat and a seed replays.
"""

from __future__ import annotations

import struct
from typing import Any

from zkpy.admin.fourletter import COMMANDS
from zkpy.jute import schema as S
from zkpy.jute.codec import decode, decode_all
from zkpy.jute.protocol import Op
from zkpy.server.core import CoreSettings, ServerCore
from zkpy.testing.fuzz.clientwire import framed, handshake
from zkpy.testing.standalone import standalone

T0 = 1_700_000_000_000
RESET_EVERY = 2000
OPEN_ACL = [S.ACL(31, S.Id("world", "anyone"))]
_LEN = struct.Struct(">i")


class ContractViolation(AssertionError):
    """A fuzz input made a server break the contract (the message says how)."""


def _settings(variant: int) -> CoreSettings:
    common: dict[str, Any] = {
        "four_letter_words": COMMANDS, "extended_types": True, "enforce_quota": True,
        "sasl_users": {"fuzz": "secret"}, "container_check_ms": 50,
        "super_digest": "super:D/InIHSb7yEEbrWz8b9l71RjZJU=",  # super:test, the probe's
    }
    if variant:
        common["enforce_auth_schemes"] = ("sasl",)
    return CoreSettings(**common)


class _Peer:
    """One client connection's bytes out, and whether the server closed it."""

    def __init__(self, core: ServerCore, now: int, port: int) -> None:
        self.out = bytearray()
        self.closed = False
        self.conn = core.connect("127.0.0.1", port, self.out.extend, self._close, now)

    def _close(self) -> None:
        self.closed = True


def split_frames(data: bytes | bytearray) -> list[bytes]:
    """Whole length-prefixed frames (ContractViolation for anything else)."""
    out, off = [], 0
    while off < len(data):
        if off + 4 > len(data):
            raise ContractViolation(f"a partial frame length at the end of {len(data)} bytes")
        (n,) = _LEN.unpack_from(data, off)
        if n < 0 or off + 4 + n > len(data):
            raise ContractViolation(f"a reply frame of {n} bytes overruns the output")
        out.append(bytes(data[off + 4:off + 4 + n]))
        off += 4 + n
    return out


class ClientTarget:
    def __init__(self) -> None:
        self.servers: dict[int, Any] = {}
        self.runs = 0
        self.now = T0

    def _server(self, variant: int) -> ServerCore:
        if self.runs % RESET_EVERY == 0:
            self.servers.clear()
        if variant not in self.servers:
            self.servers[variant] = standalone(_settings(variant), self.now).core
        core: ServerCore = self.servers[variant]
        return core

    def run(self, data: bytes) -> None:
        mode = data[0] if data else 0
        cut = data[1] if len(data) > 1 else 0
        stream = data[2:]
        core = self._server(mode >> 1 & 1)
        self.runs += 1
        self.now += 7
        core.tick(self.now)
        before = set(core.connections)
        peer = _Peer(core, self.now, 40000 + self.runs % 20000)
        raw = bool(mode & 1)
        if not raw:
            self._send(core, peer, handshake(), 0)
            frames = split_frames(peer.out)
            if peer.closed or len(frames) != 1:
                raise ContractViolation(f"a valid handshake got {frames!r}, closed={peer.closed}")
            decode_all(S.ConnectResponse, frames[0])
        self._send(core, peer, stream, cut)
        if not raw and not peer.out.startswith(b"zk_") and not peer.closed:
            split_frames(peer.out)
        self._end(core, peer, before)

    def _send(self, core: ServerCore, peer: _Peer, data: bytes, cut: int) -> None:
        step = len(data) if cut == 0 else cut
        for at in range(0, len(data), max(step, 1)):
            if peer.closed:
                break
            peer.conn.receive(data[at:at + step], self.now)
            core.flush()

    def _end(self, core: ServerCore, peer: _Peer, before: set[int]) -> None:
        if not peer.closed:
            peer.conn.lost()  # the client goes away
            core.flush()
        if peer.conn.id in core.connections:
            raise ContractViolation("a closed connection is still in the core")
        if set(core.connections) - before:
            raise ContractViolation(f"connections left behind: {set(core.connections) - before}")
        if core.outstanding_writes:
            raise ContractViolation(f"{core.outstanding_writes} writes left in flight")
        probe(core, self.now, 39999)


def probe(core: ServerCore, now: int, port: int, strict: bool = True) -> None:
    """A healthy client creates, reads and deletes a znode (ContractViolation if not).
    It authenticates as the super user first: a hostile session may take the world's
    rights on / away (setACL), as ZooKeeper lets any client with ADMIN on it do.
    Not ``strict``: for a tree loaded from hostile bytes, whose ACLs and node kinds
    may refuse the probe, each request must be answered (with any error), in order."""
    peer = _Peer(core, now, port)
    path = f"/probe-{port}"
    body = framed(S.RequestHeader(-4, Op.auth).encode()
                  + S.AuthPacket(0, "digest", b"super:test").encode())
    body += framed(S.RequestHeader(1, Op.create).encode()
                  + S.CreateRequest(path, b"ok", OPEN_ACL, 0).encode())
    body += framed(S.RequestHeader(2, Op.getData).encode()
                   + S.GetDataRequest(path, False).encode())
    body += framed(S.RequestHeader(3, Op.delete).encode() + S.DeleteRequest(path, -1).encode())
    peer.conn.receive(handshake(), now)
    core.flush()
    if core.settings.enforce_auth_schemes:
        # This server takes SASL-authenticated sessions only; the probe is refused.
        _expect_refusal(core, peer, now)
        return
    peer.conn.receive(body, now)
    core.flush()
    frames = split_frames(peer.out)
    replies = [decode(S.ReplyHeader, f)[0] for f in frames[1:]]
    answered = [(h.xid, h.err if strict else 0) for h in replies]
    if answered != [(-4, 0), (1, 0), (2, 0), (3, 0)] or peer.closed:
        raise ContractViolation(f"the server stopped serving: {replies}, closed={peer.closed}")
    peer.conn.lost()
    core.flush()


def _expect_refusal(core: ServerCore, peer: _Peer, now: int) -> None:
    peer.conn.receive(framed(S.RequestHeader(1, Op.exists).encode()
                             + S.ExistsRequest("/", False).encode()), now)
    core.flush()
    frames = split_frames(peer.out)
    if len(frames) != 2 or not peer.closed:
        raise ContractViolation(f"a session without SASL was not refused: {frames}")


def generate(mut: Any) -> bytes:
    """A structure-aware input for ``ClientTarget.run`` (see the module's layout)."""
    from zkpy.testing.fuzz.clientwire import hostile_handshake, session_stream

    rng = mut.rng
    raw = rng.random() < 0.25
    variant = 1 if rng.random() < 0.15 else 0
    cut = 0 if rng.random() < 0.7 else rng.choice((1, 2, 3, 7, 16, 100))
    if raw:
        stream = hostile_handshake(mut) + session_stream(mut, rng.choice((0, 1, 3)))
    else:
        stream = session_stream(mut, rng.choice((1, 2, 4, 8, 16)))
    return bytes((variant << 1 | raw, cut)) + stream
