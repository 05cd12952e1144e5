"""Replies to applied writes: a ``TxnResult`` as the response body its opcode expects.

What FinalRequestProcessor sends for each write op once the txn is applied:
the created path (and Stat for create2/TTL/container), the new Stat of a
setData or setACL, the membership data and Stat of a reconfig, each
sub-result of a multi (with ZooKeeper's error results for a multi that
failed), or nothing. Pure functions of the request and its result.
"""

from __future__ import annotations

from typing import Any, Final

from zkpy.jute import schema as S
from zkpy.jute.codec import encode
from zkpy.jute.protocol import Op
from zkpy.tree.datatree import Node, TxnResult

# The members of Op read per request, as plain ints: on Python 3.11 reading an
# IntEnum member goes through EnumType.__getattr__'s hook, 4x a plain attribute
# (compiled, these are C statics).
_Op_create: Final = int(Op.create)
_Op_create2: Final = int(Op.create2)
_Op_createContainer: Final = int(Op.createContainer)
_Op_createTTL: Final = int(Op.createTTL)
_Op_error: Final = int(Op.error)
_Op_multi: Final = int(Op.multi)
_Op_reconfig: Final = int(Op.reconfig)
_Op_setACL: Final = int(Op.setACL)
_Op_setData: Final = int(Op.setData)


def _stat(stat: Any) -> bytes:
    """A reply's Stat: the live node's packed at once, a detached copy encoded."""
    return stat.wire_stat() if isinstance(stat, Node) else encode(stat)


def _sub_result(rc: TxnResult) -> bytes:
    t = rc.type
    if t == _Op_error:
        return encode(S.MultiHeader(-1, False, rc.err)) + encode(S.ErrorResponse(rc.err))
    if t == _Op_create:
        return encode(S.MultiHeader(t, False, 0)) + encode(S.CreateResponse(rc.path))
    if t in (_Op_create2, _Op_createTTL, _Op_createContainer):
        return encode(S.MultiHeader(_Op_create2, False, 0)) + encode(S.Create2Response(rc.path, rc.stat))
    if t == _Op_setData:
        return encode(S.MultiHeader(t, False, 0)) + encode(S.SetDataResponse(rc.stat))
    return encode(S.MultiHeader(t, False, 0))


def write_reply(req: Any, rc: TxnResult) -> tuple[int, bytes]:
    """(error code, response body) for a committed write request."""
    t = req.type
    if t == _Op_multi:
        if rc.multi is None:  # the whole multi failed in prep (not an op)
            return rc.err, b""
        parts = [_sub_result(sub) for sub in rc.multi]
        parts.append(encode(S.MultiHeader(-1, True, -1)))
        return 0, b"".join(parts)
    if rc.err:
        return rc.err, b""
    if t == _Op_create:
        return 0, encode(S.CreateResponse(rc.path))
    if t in (_Op_create2, _Op_createTTL, _Op_createContainer):  # Create2Response
        return 0, encode(S.CreateResponse(rc.path)) + _stat(rc.stat)
    if t == _Op_setData:  # SetDataResponse: the Stat alone
        return 0, _stat(rc.stat)
    if t == _Op_reconfig:  # the new membership as /zookeeper/config now holds it
        return 0, encode(S.GetDataResponse(rc.stat.data, rc.stat))
    if t == _Op_setACL:  # SetACLResponse: the Stat alone
        return 0, _stat(rc.stat)
    return 0, b""
