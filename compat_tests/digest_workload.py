"""A scripted write load that touches every input of ZooKeeper's tree digest.

Used by ``record_digests.py`` (to record Apache ZooKeeper's own digests) and
by ``test_digest_compat.py`` (to make each server write files the other
loads). Every znode kind (persistent, sequential, ephemeral, container, TTL),
null / empty / multi-block data, the root (digested as ""), a non-ASCII name,
a node directly under /zookeeper (counted) and quota nodes under
/zookeeper/quota (not counted, and their stat node is updated locally),
setData, setACL, delete, multi (one that commits, one that fails), a failed
write (an ErrorTxn, without digest), session close with ephemerals, and
more than 256 transactions (the ``hash`` command keeps every 128th).
Needs ``zookeeper.extendedTypesEnabled=true`` for the TTL node.
"""

from __future__ import annotations

from typing import Any

from compat_tests.test_durability import Raw, create_body, multi_body, multi_errors
from zkpy.jute import schema as S
from zkpy.jute.codec import decode, encode
from zkpy.jute.protocol import Op, Perms

OPEN = [S.ACL(Perms.ALL, S.Id("world", "anyone"))]
BIG = bytes(range(256)) * 40  # 10 KiB: the CRC runs over many blocks


def _ok(r: Raw, op: int, body: bytes) -> bytes:
    err, rest = r.call(op, body)
    assert err == 0, (op, err)
    return rest


def run(address: tuple[str, int], root: str = "/d", filler: int = 270) -> None:
    a = Raw(address, timeout_ms=30000)
    b = Raw(address, timeout_ms=30000)
    _ok(a, Op.create, create_body(root, b"data"))
    _ok(a, Op.create, encode(S.CreateRequest(f"{root}/null", None, OPEN, 0)))
    _ok(a, Op.create, create_body(f"{root}/empty", b""))
    _ok(a, Op.create, create_body(f"{root}/big", BIG))
    seqs = [decode(S.CreateResponse, _ok(a, Op.create, create_body(
        f"{root}/seq-", b"%d" % i, flags=2)))[0].path for i in range(3)]
    _ok(a, Op.create, create_body(f"{root}/eph", b"e", flags=1))
    _ok(b, Op.create, create_body(f"{root}/ephB", b"b", flags=3))  # ephemeral sequential
    _ok(a, Op.createContainer, create_body(f"{root}/cont", b"c", flags=4))
    _ok(a, Op.create, create_body(f"{root}/cont/kid", b""))
    _ok(a, Op.createTTL, encode(S.CreateTTLRequest(f"{root}/ttl", b"t", OPEN, 5, 3_600_000)))
    for v in range(3):
        _ok(a, Op.setData, encode(S.SetDataRequest(root, b"v%d" % v, v)))
    _ok(a, Op.setACL, encode(S.SetACLRequest(
        f"{root}/empty", [S.ACL(Perms.READ | Perms.ADMIN, S.Id("world", "anyone"))], 0)))
    _ok(a, Op.delete, encode(S.DeleteRequest(seqs[1], -1)))
    _ok(a, Op.setData, encode(S.SetDataRequest("/", b"root data", -1)))
    _ok(a, Op.create, create_body(f"{root}/\u00fcn\u00efc\u00f8d\u00e9-\u6f22", "ü".encode()))
    _ok(a, Op.create, create_body("/zookeeper/x", b"counted"))
    quota = f"/zookeeper/quota{root}"
    _ok(a, Op.create, create_body("/zookeeper/quota" + root, b""))
    _ok(a, Op.create, create_body(f"{quota}/zookeeper_limits", b"count=100,bytes=-1"))
    _ok(a, Op.create, create_body(f"{quota}/zookeeper_stats", b"count=0,bytes=0"))
    _ok(a, Op.create, create_body(f"{root}/q", b"quota-counted"))
    err, rest = a.call(Op.multi, multi_body([
        (Op.create, S.CreateRequest(f"{root}/m1", b"m", OPEN, 0)),
        (Op.setData, S.SetDataRequest(root, b"multi", -1)),
        (Op.delete, S.DeleteRequest(seqs[0], -1))]))
    assert err == 0 and multi_errors(rest) == [0, 0, 0], (err, rest)
    err, rest = a.call(Op.multi, multi_body([
        (Op.create, S.CreateRequest(f"{root}/m2", b"m", OPEN, 0)),
        (Op.setData, S.SetDataRequest(f"{root}/missing", b"x", -1))]))
    assert any(multi_errors(rest)), (err, rest)
    err, _ = a.call(Op.create, create_body(root, b"again"))
    assert err == -110  # NODEEXISTS: an ErrorTxn
    b.call(Op.closeSession, b"")  # deletes its ephemeral: the parent's pzxid moves
    b.sock.close()
    _ok(a, Op.create, create_body(f"{root}/n", b""))
    for i in range(filler):
        _ok(a, Op.setData, encode(S.SetDataRequest(f"{root}/n", b"%d" % i, -1)))
    a.call(Op.closeSession, b"")
    a.sock.close()


def one_more(address: tuple[str, int], path: str, data: bytes = b"") -> Any:
    r = Raw(address, timeout_ms=30000)
    try:
        return _ok(r, Op.create, create_body(path, data))
    finally:
        r.call(Op.closeSession, b"")
        r.sock.close()
