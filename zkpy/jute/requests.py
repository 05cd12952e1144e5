"""Client request frames decoded by opcode: the body record of each request.

A request frame is a RequestHeader (xid, op) followed by the request record of
its op (``zkpy.jute.protocol.REQUEST_RECORDS``); a multi or multiRead is a
sequence of MultiHeader + op record, ended by a MultiHeader with ``done``. The
same bytes travel inside a follower's REQUEST packet to the leader, which
decodes them here too. ConnectRequest has two layouts: the one every client
since 3.4 sends (with ``readOnly``) and the older one without it.

Decoding raises ``JuteError`` for malformed bytes and ``KeyError`` for an
unknown op; it decides nothing else. ``REQUEST_HEADER`` and ``REPLY_FRAME``
are the headers' layouts for the fast paths, made from the schema.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from zkpy.jute import schema as S
from zkpy.jute.codec import JuteError, decode, decode_all, layout
from zkpy.jute.opcodes import (
    OP_closeSession,
    OP_multi,
    OP_multiRead,
    OP_ping,
    OP_whoAmI,
)
from zkpy.jute.protocol import REQUEST_RECORDS, Op

_LEN = struct.Struct(">i")
_OLD_CONNECT = struct.Struct(">iqiq")  # protocolVersion, lastZxidSeen, timeOut, sessionId

_REQUEST_RECORDS: Final = REQUEST_RECORDS  # (compiled: a C static)

#: A request's RequestHeader (xid, type), at the start of its frame.
REQUEST_HEADER: Final = layout(S.RequestHeader)
#: A reply's frame length and ReplyHeader (xid, zxid, err), packed in one call.
REPLY_FRAME: Final = layout(S.ReplyHeader, prefix="i")

# Multi-op request records by op type (MultiOperationRecord).
MULTI_RECORDS: dict[int, Any] = {
    Op.create: S.CreateRequest, Op.create2: S.CreateRequest,
    Op.createContainer: S.CreateRequest, Op.createTTL: S.CreateTTLRequest,
    Op.delete: S.DeleteRequest, Op.setData: S.SetDataRequest,
    Op.check: S.CheckVersionRequest, Op.getChildren: S.GetChildrenRequest,
    Op.getData: S.GetDataRequest,
}


def decode_body(op: int, frame: bytes) -> Any:
    """The request record of a client frame (xid, op, body); None for the ops
    that carry none."""
    if op in (OP_ping, OP_closeSession, OP_whoAmI):
        return None
    if op == OP_multi or op == OP_multiRead:
        return decode_multi(frame)
    cls = _REQUEST_RECORDS[op]
    return decode(cls, frame, 8)[0]


def decode_multi(frame: bytes) -> list[tuple[int, Any]]:
    ops: list[tuple[int, Any]] = []
    off = 8
    end = len(frame)
    while True:
        hdr, off = decode(S.MultiHeader, frame, off, end)
        if hdr.done:
            return ops
        cls = MULTI_RECORDS.get(hdr.type)
        if cls is None:
            raise JuteError(f"invalid type of op {hdr.type} in a multi")
        rec, off = decode(cls, frame, off, end)
        ops.append((hdr.type, rec))


def decode_connect(frame: bytes) -> tuple[Any, bool]:
    """(ConnectRequest, old_client): a pre-3.4 client sends the same fields
    without the readOnly flag (and expects the reply without it)."""
    fixed = _OLD_CONNECT.size
    if len(frame) >= fixed + 4:
        (n,) = _LEN.unpack_from(frame, fixed)
        passwd_len = max(n, 0)
        if len(frame) == fixed + 4 + passwd_len:
            pv, last, to, sid = _OLD_CONNECT.unpack_from(frame, 0)
            passwd = frame[fixed + 4:fixed + 4 + passwd_len]
            return S.ConnectRequest(pv, last, to, sid, passwd, False), True
    return decode_all(S.ConnectRequest, frame), False
