"""Replies to applied writes: a ``TxnResult`` as the response body its opcode expects.

What FinalRequestProcessor sends for each write op once the txn is applied:
the created path (and Stat for create2/TTL/container), the new Stat of a
setData or setACL, the membership data and Stat of a reconfig, each
sub-result of a multi (with ZooKeeper's error results for a multi that
failed), or nothing. Pure functions of the request and its result.
"""

from __future__ import annotations

from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.codec import encode
from zkpy.jute.opcodes import (
    OP_create,
    OP_create2,
    OP_createContainer,
    OP_createTTL,
    OP_error,
    OP_multi,
    OP_reconfig,
    OP_setACL,
    OP_setData,
)
from zkpy.tree.datatree import Node, TxnResult


def _stat(stat: Any) -> bytes:
    """A reply's Stat: the live node's packed at once, a detached copy encoded."""
    return stat.wire_stat() if isinstance(stat, Node) else encode(stat)


def _sub_result(rc: TxnResult) -> bytes:
    t = rc.type
    if t == OP_error:
        return encode(S.MultiHeader(-1, False, rc.err)) + encode(S.ErrorResponse(rc.err))
    if t == OP_create:
        return encode(S.MultiHeader(t, False, 0)) + encode(S.CreateResponse(rc.path))
    if t in (OP_create2, OP_createTTL, OP_createContainer):
        return encode(S.MultiHeader(OP_create2, False, 0)) + encode(S.Create2Response(rc.path, rc.stat))
    if t == OP_setData:
        return encode(S.MultiHeader(t, False, 0)) + encode(S.SetDataResponse(rc.stat))
    return encode(S.MultiHeader(t, False, 0))


def write_reply(req: Any, rc: TxnResult) -> tuple[int, bytes]:
    """(error code, response body) for a committed write request."""
    t = req.type
    if t == OP_multi:
        if rc.multi is None:  # the whole multi failed in prep (not an op)
            return rc.err, b""
        parts = [_sub_result(sub) for sub in rc.multi]
        parts.append(encode(S.MultiHeader(-1, True, -1)))
        return 0, b"".join(parts)
    if rc.err:
        return rc.err, b""
    if t == OP_create:
        return 0, encode(S.CreateResponse(rc.path))
    if t in (OP_create2, OP_createTTL, OP_createContainer):  # Create2Response
        return 0, encode(S.CreateResponse(rc.path)) + _stat(rc.stat)
    if t == OP_setData:  # SetDataResponse: the Stat alone
        return 0, _stat(rc.stat)
    if t == OP_reconfig:  # the new membership as /zookeeper/config now holds it
        return 0, encode(S.GetDataResponse(rc.stat.data, rc.stat))
    if t == OP_setACL:  # SetACLResponse: the Stat alone
        return 0, _stat(rc.stat)
    return 0, b""
