"""Apache ZooKeeper's on-disk layouts: file names, headers, transaction entries.

A transaction is stored as ZooKeeper stores it (Util.marshallTxnEntry): the
TxnHeader, the body record of its type (a multi's ops each serialized into a
``Txn``), then the TxnDigest (digest version, the tree's digest once the
txn is applied) when it has one: every txn made with digests enabled but
failed writes (ZooKeeper's ErrorTxns carry none). The same bytes are what a
log entry holds and what a PROPOSAL ships. Reading, as SerializeUtils does:
the digest is read only with digests enabled and only if bytes remain.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Any, Final

from zkpy.jute import schema as S
from zkpy.jute.codec import JuteError, decode, encode
from zkpy.jute.opcodes import (
    OP_closeSession,
    OP_createSession,
    OP_error,
    OP_multi,
)
from zkpy.jute.protocol import Op
from zkpy.storage.fs import LOCAL, FileSystem
from zkpy.tree import digest as tree_digest
from zkpy.tree.datatree import MultiTxnBody

TXNLOG_MAGIC = 0x5A4B4C47  # "ZKLG"
SNAP_MAGIC = 0x5A4B534E  # "ZKSN"
VERSION = 2
VERSION_DIR = "version-2"
END_OF_RECORD = 0x42  # 'B'

_BODY_RECORDS: dict[int, Any] = {
    Op.create: S.CreateTxn, Op.create2: S.CreateTxn,
    Op.createTTL: S.CreateTTLTxn, Op.createContainer: S.CreateContainerTxn,
    Op.delete: S.DeleteTxn, Op.deleteContainer: S.DeleteTxn,
    Op.setData: S.SetDataTxn, Op.reconfig: S.SetDataTxn,
    Op.setACL: S.SetACLTxn, Op.error: S.ErrorTxn, Op.check: S.CheckVersionTxn,
    Op.createSession: S.CreateSessionTxn, Op.closeSession: S.CloseSessionTxn,
}


def log_name(zxid: int) -> str:
    return f"log.{zxid:x}"


def snapshot_name(zxid: int) -> str:
    return f"snapshot.{zxid:x}"


_NAME = re.compile(r"^(log|snapshot)\.([0-9a-fA-F]+)$")


def zxid_of(name: str, prefix: str) -> int | None:
    m = _NAME.match(name)
    if m is None or m.group(1) != prefix:
        return None
    return int(m.group(2), 16)


def files_by_zxid(directory: str, prefix: str,
                  fs: FileSystem = LOCAL) -> list[tuple[int, str]]:
    """(zxid, path) of every ``prefix.<hex>`` file in ``directory``, oldest first."""
    out = []
    try:
        names = fs.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        zxid = zxid_of(name, prefix)
        if zxid is not None:
            out.append((zxid, os.path.join(directory, name)))
    out.sort()
    return out


def encode_body(type: int, txn: Any) -> bytes:
    if type == OP_multi:
        return encode(S.MultiTxn([S.Txn(t, encode(sub)) for t, sub in txn.ops]))
    if txn is None:
        return b""
    return encode(txn)


def encode_txn(hdr: S.TxnHeader, txn: Any, digest: S.TxnDigest | None = None) -> bytes:
    """TxnHeader + body (+ TxnDigest), the bytes of one log entry (and of a Zab proposal)."""
    if digest is None:
        return encode(hdr) + encode_body(hdr.type, txn)
    return encode(hdr) + encode_body(hdr.type, txn) + _DIGEST.pack(digest.version,
                                                                    digest.treeDigest)


def _decode_body(type: int, buf: bytes, off: int) -> tuple[Any, int]:
    if type == OP_multi:
        multi, off = decode(S.MultiTxn, buf, off)
        ops = []
        for sub in multi.txns or ():
            if sub.type == OP_multi:
                raise JuteError("a multi inside a multi")
            rec, _ = _decode_body(sub.type, sub.data or b"", 0)
            ops.append((sub.type, rec))
        return MultiTxnBody(ops), off
    rec, off = _decode_record(type, buf, off)
    _check_paths(type, rec)
    return rec, off


# The txns that name a znode and the ones that make or remove one (not the root).
_NAMING = frozenset(t for t in _BODY_RECORDS if t not in (
    OP_error, OP_createSession, OP_closeSession))
_NOT_ROOT = frozenset({Op.create, Op.create2, Op.createTTL, Op.createContainer, Op.delete,
                       Op.deleteContainer})


def _check_paths(type: int, rec: Any) -> None:
    """A txn only names paths the tree can hold: from "/", no empty name, and never
    makes or removes the root (prep guarantees it for our own txns; this is for
    a log's or a leader's, which would otherwise corrupt the tree)."""
    if type in _NAMING:
        _check_path(rec.path, type in _NOT_ROOT)
    elif type == OP_closeSession and rec is not None:
        for path in rec.paths2Delete or ():
            _check_path(path, True)


def _check_path(path: str | None, not_root: bool) -> None:
    if (path is None or path[:1] != "/" or "//" in path
            or (path.endswith("/") and (not_root or path != "/"))):
        raise JuteError(f"transaction on an invalid path {path!r}")


def _decode_record(type: int, buf: bytes, off: int) -> tuple[Any, int]:
    cls = _BODY_RECORDS.get(type)
    if cls is None:
        raise JuteError(f"unknown transaction type {type}")
    if type == OP_closeSession and (off >= len(buf) or _digest_only(buf, off)):
        return None, off  # written by a server with closeSession txns disabled
    if cls is S.CreateTxn:
        try:
            return decode(cls, buf, off)
        except JuteError:
            # Pre-3.3 logs: CreateTxnV0, without parentCVersion (-1 means "next").
            v0, off = decode(S.CreateTxnV0, buf, off)
            return S.CreateTxn(v0.path, v0.data, v0.acl, v0.ephemeral, -1), off
    return decode(cls, buf, off)


def decode_txn(buf: bytes) -> tuple[Any, Any]:
    """(TxnHeader, body) from one entry; a trailing TxnDigest is skipped."""
    hdr, off = decode(S.TxnHeader, buf, 0)
    txn, _ = _decode_body(hdr.type, buf, off)
    return hdr, txn


def decode_entry(buf: bytes) -> tuple[S.TxnHeader, Any, S.TxnDigest | None]:
    """(TxnHeader, body, TxnDigest or None) from one entry (SerializeUtils.deserializeTxn)."""
    hdr, off = decode(S.TxnHeader, buf, 0)
    txn, off = _decode_body(hdr.type, buf, off)
    if off + _DIGEST.size > len(buf) or not tree_digest.enabled():
        return hdr, txn, None
    version, value = _DIGEST.unpack_from(buf, off)
    return hdr, txn, S.TxnDigest(version, value)


_DIGEST: Final = struct.Struct(">iq")  # TxnDigest: version, treeDigest


def _digest_only(buf: bytes, off: int) -> bool:
    """A closeSession without body followed by its TxnDigest (closeSession txns
    disabled): exactly a TxnDigest's bytes remain and they are not a CloseSessionTxn."""
    if len(buf) - off != _DIGEST.size:
        return False
    try:
        _, end = decode(S.CloseSessionTxn, buf, off)
    except JuteError:
        return True
    return end != len(buf)
