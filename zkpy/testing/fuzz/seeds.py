"""Valid inputs the fuzzers start from, made by zkpy's own writers.

A standalone server in memory (``zkpy.testing.standalone``) runs a workload
that touches every kind of znode and transaction (ephemeral, sequential,
container and TTL nodes, ACLs of every scheme, quotas, multi, setACL,
deletes, sessions opened and closed); ``sample`` returns its snapshot bytes
and the log entries after it, and ``log_file`` lays entries out as a
``log.<zxid>`` file. Deterministic: the same bytes on every call.
"""

from __future__ import annotations

import functools
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass

from zkpy.jute import schema as S
from zkpy.jute.codec import Record
from zkpy.jute.protocol import Op
from zkpy.server.core import CoreSettings
from zkpy.storage.txnlog import LogWriter
from zkpy.testing.fuzz.clientwire import framed, handshake
from zkpy.testing.fuzz.mutate import Mutator
from zkpy.testing.standalone import MemoryDisk, snapshot, standalone

T0 = 1_700_000_000_000
_OPEN = [S.ACL(31, S.Id("world", "anyone"))]
_MIXED = [S.ACL(1, S.Id("ip", "127.0.0.1")), S.ACL(31, S.Id("digest", "u:x7s9KkMMc6bo4n1Tr+s7aVZIpcs=")),
          S.ACL(17, S.Id("world", "anyone"))]


@dataclass(frozen=True)
class Sample:
    snapshot: bytes
    snapshot_zxid: int
    log: tuple[tuple[int, bytes], ...]


def _req(xid: int, op: int, rec: Record | bytes) -> bytes:
    body = rec if isinstance(rec, bytes) else rec.encode()
    return framed(S.RequestHeader(xid, op).encode() + body)


def _multi(*ops: tuple[int, Record]) -> bytes:
    parts = [S.MultiHeader(op, False, -1).encode() + rec.encode() for op, rec in ops]
    return b"".join(parts) + S.MultiHeader(-1, True, -1).encode()


def _first_half() -> list[bytes]:
    return [
        _req(1, Op.create, S.CreateRequest("/app", b"config", _OPEN, 0)),
        _req(2, Op.create, S.CreateRequest("/app/e", b"", _OPEN, 1)),  # ephemeral
        _req(3, Op.create2, S.CreateRequest("/app/s-", b"q", _MIXED, 2)),  # sequential
        _req(4, Op.createContainer, S.CreateRequest("/c", b"", _OPEN, 4)),
        _req(5, Op.createTTL, S.CreateTTLRequest("/ttl", b"t", _OPEN, 5, 60000)),
        _req(6, Op.create, S.CreateRequest("/zookeeper/quota/app", b"", _OPEN, 0)),
        _req(7, Op.create, S.CreateRequest("/zookeeper/quota/app/zookeeper_limits",
                                           b"count=10,bytes=1000", _OPEN, 0)),
    ]


def _second_half() -> list[bytes]:
    return [
        _req(8, Op.setData, S.SetDataRequest("/app", b"v2" * 40, 0)),
        _req(9, Op.setACL, S.SetACLRequest("/app", _MIXED, -1)),
        _req(10, Op.multi, _multi((Op.create, S.CreateRequest("/m", b"1", _OPEN, 0)),
                                  (Op.check, S.CheckVersionRequest("/m", 0)),
                                  (Op.setData, S.SetDataRequest("/m", b"2", -1)))),
        _req(11, Op.multi, _multi((Op.delete, S.DeleteRequest("/nonexistent", -1)),)),
        _req(12, Op.create, S.CreateRequest("/c/child", b"x", _OPEN, 0)),
        _req(13, Op.delete, S.DeleteRequest("/c/child", -1)),
        _req(14, Op.create, S.CreateRequest("/\u00e9t\u00e9", bytes(range(256)), _OPEN, 0)),
        _req(15, Op.reconfig, S.ReconfigRequest("", "", "", -1)),
    ]


@functools.cache
def sample() -> Sample:
    """A snapshot taken half-way through the workload and the log after it."""
    replica = standalone(CoreSettings(extended_types=True), T0, MemoryDisk())
    core = replica.core
    out: list[bytes] = []
    conn = core.connect("127.0.0.1", 1, out.append, lambda: None, T0)
    conn.receive(handshake(), T0)
    core.flush()
    for frame in _first_half():
        conn.receive(frame, T0 + 1)
        core.flush()
    snapshot(replica)
    for frame in _second_half():
        conn.receive(frame, T0 + 2)
        core.flush()
    conn.receive(_req(16, Op.closeSession, b""), T0 + 3)
    core.flush()
    disk = replica.driver.disk
    assert isinstance(disk, MemoryDisk)
    zxid, data = disk.synced.snapshot
    return Sample(data, zxid, tuple(disk.synced.log))


def log_file(entries: tuple[tuple[int, bytes], ...] | list[tuple[int, bytes]],
             prealloc: int = 4096) -> bytes:
    """The bytes of a ``log.<first zxid>`` file holding ``entries``, as LogWriter
    writes it (preallocated zeros after the last entry)."""
    with tempfile.TemporaryDirectory(prefix="zkpy-fuzz-seed-") as d:
        writer = LogWriter(d, prealloc, force_sync=False)
        writer.append_many(list(entries))
        writer.close()
        (name,) = os.listdir(d)
        with open(os.path.join(d, name), "rb") as f:
            return f.read()


_SEAL_TAIL = struct.pack(">i", 1) + b"/"
_TRAILER = 8 + 5 + 20 + 8 + 5  # seal, ZxidDigest, second seal


def seal(body: bytes, digest: tuple[int, int, int] | None = None) -> bytes:
    """Snapshot-file bytes for ``body`` (header to the "/" end marker): the seals
    recomputed, so a mutation reaches the parser past the checksum."""
    checksum = zlib.adler32(body)
    out = body + struct.pack(">q", checksum) + _SEAL_TAIL
    if digest is None:
        return out
    out += struct.pack(">qiq", *digest)
    return out + struct.pack(">q", zlib.adler32(out[len(body):], checksum)) + _SEAL_TAIL


def snapshot_body() -> bytes:
    """The sample snapshot from its header to the "/" end marker."""
    return sample().snapshot[:-_TRAILER]


def mutated_snapshot(mut: Mutator) -> bytes:
    """The sample snapshot with its body mutated and its seals made good again."""
    body = mut.mutate(snapshot_body())
    digest = None if mut.rng.random() < 0.3 else (sample().snapshot_zxid, 2, mut.int64())
    return seal(body, digest)
