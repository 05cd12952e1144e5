"""Every in-memory fuzz target by name, with its seeds and its structure-aware input.

    client      zkpy.testing.fuzz.client: requests of every opcode, handshakes, framing
    quorum      zkpy.testing.fuzz.quorum: the quorum port, both directions, and SNAP
    election    zkpy.testing.fuzz.quorum: the election port
    wire        zkpy.testing.fuzz.parsers: the ports' pure decoders
    snapshot    zkpy.testing.fuzz.files: snapshot files
    snapstream  zkpy.testing.fuzz.files: the stream after a SNAP
    datadir     zkpy.testing.fuzz.files: txn logs, snapshots and epoch files at start-up
    dynconfig   zkpy.testing.fuzz.files: the dynamic config file
    admin       zkpy.testing.fuzz.admin: AdminServer commands and the snapshot/restore bodies
"""

from __future__ import annotations

import struct
import zlib

from zkpy.testing.fuzz import admin, client, files, parsers, quorum
from zkpy.testing.fuzz.mutate import Mutator
from zkpy.testing.fuzz.run import Target
from zkpy.testing.fuzz.seeds import log_file, sample

_SEAL_TAIL = struct.pack(">i", 1) + b"/"
_TRAILER = 8 + 5 + 20 + 8 + 5  # seal, ZxidDigest, second seal


def _client_seeds() -> list[bytes]:
    import random

    mut = Mutator(random.Random(0))
    return [client.generate(mut) for _ in range(32)]


def seal(body: bytes, digest: tuple[int, int, int] | None = None) -> bytes:
    """Snapshot-file bytes for ``body`` (header to the "/" end marker): the seals
    recomputed, so a mutation reaches the parser past the checksum."""
    checksum = zlib.adler32(body)
    out = body + struct.pack(">q", checksum) + _SEAL_TAIL
    if digest is None:
        return out
    out += struct.pack(">qiq", *digest)
    return out + struct.pack(">q", zlib.adler32(out[len(body):], checksum)) + _SEAL_TAIL


def _snapshot_body() -> bytes:
    return sample().snapshot[:-_TRAILER]


def _snapshot_input(mut: Mutator) -> bytes:
    body = mut.mutate(_snapshot_body())
    digest = None if mut.rng.random() < 0.3 else (sample().snapshot_zxid, 2, mut.int64())
    return seal(body, digest)


def _stream_input(mut: Mutator) -> bytes:
    from zkpy.storage import snapstream

    stream = snapstream.stream_of(sample().snapshot)
    return bytes([mut.rng.randrange(256)]) + mut.mutate(stream)


def _log_input(mut: Mutator) -> bytes:
    """A log whose entries' bodies are mutated but whose checksums hold."""
    entries = list(sample().log)
    for _ in range(mut.rng.randint(1, 3)):
        i = mut.rng.randrange(len(entries))
        zxid, data = entries[i]
        entries[i] = (zxid, mut.mutate(data) or b"\0")
    kind = mut.rng.choice((0, 0, 1, 2))
    if kind == 2:
        return bytes([2]) + _snapshot_input(mut)
    return bytes([kind]) + log_file(entries)


def _datadir_seeds() -> list[bytes]:
    s = sample()
    return [b"\x00" + log_file(s.log), b"\x01" + log_file(s.log[:3]), b"\x02" + s.snapshot,
            b"\x03" + b"5\n3", b"\x03" + b"0\n0\n", b"\x00" + log_file(s.log)[:200]]


def _dynconfig_seeds() -> list[bytes]:
    return [b"server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889:participant;2182\n"
            b"server.3=[::1]:2890:3890:observer;127.0.0.1:2183\n",
            b"server.1=localhost:2888:3888;2181\nversion=100000000\n"]


TARGETS: dict[str, Target] = {
    "client": Target(client.ClientTarget, _client_seeds, client.generate),
    "quorum": Target(quorum.QuorumTarget, quorum.quorum_seeds, quorum.generate_quorum),
    "election": Target(quorum.ElectionTarget, quorum.election_seeds, quorum.generate_election),
    "wire": Target(parsers.WireTarget, parsers.seeds),
    "snapshot": Target(files.SnapshotTarget, lambda: [sample().snapshot], _snapshot_input),
    "snapstream": Target(files.SnapStreamTarget, lambda: [_stream_input(Mutator(
        __import__("random").Random(0)))], _stream_input),
    "datadir": Target(files.DataDirTarget, _datadir_seeds, _log_input),
    "dynconfig": Target(files.DynamicConfigTarget, _dynconfig_seeds),
    "admin": Target(admin.AdminTarget, admin.seeds, admin.generate),
}
