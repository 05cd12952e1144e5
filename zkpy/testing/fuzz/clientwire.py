"""Client-port traffic for the fuzzers: valid frames of every opcode, then worse.

``request_frame(mut, xid)`` builds one framed request of a random opcode
(every entry of ``REQUEST_RECORDS``, multi and multiRead with mixed ops, the
bodiless ping, closeSession and whoAmI, and opcodes no server knows) whose
record fields come from ``Mutator.value``; ``hostile_frame`` mutates such a
frame's body (the length re-computed, so the server decodes it) or, now and
then, its framing too. ``handshake`` and ``hostile_handshake`` are the same
for the ConnectRequest. Used by the in-memory target
(``zkpy.testing.fuzz.targets``) and the real-process fuzzer
(``zkpy.testing.fuzz.live``) alike.
"""

from __future__ import annotations

import struct
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.protocol import REQUEST_RECORDS, Op
from zkpy.jute.requests import MULTI_RECORDS
from zkpy.testing.fuzz.mutate import Mutator

_LEN = struct.Struct(">i")
SPECIAL_XIDS = (-1, -2, -4, -8, 0, 0x7FFFFFFF)
_BODILESS = (Op.ping, Op.closeSession, Op.whoAmI)
_UNKNOWN = (0, 10, 23, 99, 108, 999, -10, -11, -1, 0x7FFFFFFF, -0x80000000)
_OPS: tuple[int, ...] = tuple(REQUEST_RECORDS) + (Op.multi, Op.multiRead) + _BODILESS
_FOUR_LETTER = (b"ruok", b"srvr", b"stat", b"mntr", b"conf", b"cons", b"crst", b"dump",
                b"envi", b"wchs", b"wchc", b"wchp", b"dirs", b"isro", b"gtmk", b"stmk",
                b"srst", b"hash", b"xxxx")


def framed(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


def handshake(timeout: int = 30000, session_id: int = 0, passwd: bytes = bytes(16),
              last_zxid: int = 0, read_only: bool = False) -> bytes:
    return framed(S.ConnectRequest(0, last_zxid, timeout, session_id, passwd,
                                   read_only).encode())


def _multi_body(mut: Mutator, read: bool) -> bytes:
    rng = mut.rng
    ops = [Op.getData, Op.getChildren] if read else list(MULTI_RECORDS)
    parts = []
    for _ in range(rng.choice((0, 1, 2, 3, 5))):
        op = rng.choice(ops) if rng.random() < 0.95 else rng.choice((Op.exists, Op.multi, 77))
        parts.append(S.MultiHeader(op, False, -1).encode())
        cls = MULTI_RECORDS.get(op, S.GetDataRequest)
        parts.append(mut.record(cls).encode())
    parts.append(S.MultiHeader(-1, True, -1).encode())
    return b"".join(parts)


def request_body(mut: Mutator, op: int) -> bytes:
    """The request record of ``op`` with hostile-but-well-formed fields."""
    if op in (Op.multi, Op.multiRead):
        return _multi_body(mut, op == Op.multiRead)
    cls: Any = REQUEST_RECORDS.get(op)
    if cls is None:
        return b"" if mut.rng.random() < 0.5 else mut.rng.randbytes(mut.rng.randint(1, 24))
    return bytes(mut.record(cls).encode())


def request_frame(mut: Mutator, xid: int) -> bytes:
    """One framed request of a random opcode (an unknown one now and then)."""
    rng = mut.rng
    op = rng.choice(_OPS) if rng.random() < 0.97 else rng.choice(_UNKNOWN)
    if rng.random() < 0.05:
        xid = rng.choice(SPECIAL_XIDS)
    return framed(S.RequestHeader(xid, op).encode() + request_body(mut, op))


def hostile_frame(mut: Mutator, xid: int) -> bytes:
    """A request frame, its body mutated (and its length kept true) or, one time
    in ten, its framing mutated as well."""
    frame = request_frame(mut, xid)
    rng = mut.rng
    roll = rng.random()
    if roll < 0.45:
        return frame  # well-formed: requests the server must answer, not refuse
    if roll < 0.9:
        body = mut.mutate(frame[4:])
        return framed(body)
    return mut.mutate(frame)


def hostile_handshake(mut: Mutator) -> bytes:
    """A ConnectRequest with hostile fields, mutated now and then; or a four-letter word."""
    rng = mut.rng
    if rng.random() < 0.08:
        return rng.choice(_FOUR_LETTER)
    req = S.ConnectRequest(rng.choice((0, 0, -1, 1)), rng.choice((0, 0, -1, 1, 1 << 40)),
                           mut.int32() if rng.random() < 0.5 else 30000,
                           rng.choice((0, 0, 0, -1, 1, 0x100000000)) if rng.random() < 0.9
                           else mut.int64(),
                           rng.choice((bytes(16), b"", None, b"\xff" * 16, bytes(17))),
                           rng.random() < 0.3)
    body = req.encode()
    if rng.random() < 0.15:
        body = body[:-1]  # the pre-3.4 layout, without readOnly
    if rng.random() < 0.4:
        body = mut.mutate(body)
    return framed(body) if rng.random() < 0.9 else mut.mutate(framed(body))


def session_stream(mut: Mutator, frames: int) -> bytes:
    """What one hostile client sends after its handshake: ``frames`` requests."""
    return b"".join(hostile_frame(mut, xid) for xid in range(1, frames + 1))
